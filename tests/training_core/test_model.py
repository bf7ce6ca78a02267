"""Model: shapes, masks, RoPE, presets, meta-device init, parameter counts, no torch.distributed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import training_core
from training_core.model import (
    ModelConfig,
    Transformer,
    apply_rope,
    list_presets,
    model_preset,
    rope_tables,
)
from training_core.moe import MoEConfig

torch.set_num_threads(1)
VOCAB, SEQ = 33, 16


def _tiny(**overrides) -> ModelConfig:
    return model_preset("tiny", VOCAB, SEQ).model_copy(update=overrides)


def test_forward_shape_and_dtype() -> None:
    torch.manual_seed(0)
    model = Transformer(_tiny())
    logits = model(torch.randint(0, VOCAB, (3, SEQ)), causal=True)
    assert logits.shape == (3, SEQ, VOCAB)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_causal_mask_hides_the_future_and_bidirectional_does_not() -> None:
    torch.manual_seed(0)
    model = Transformer(_tiny())
    idx = torch.randint(0, VOCAB, (1, SEQ))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(idx, causal=True), model(changed, causal=True)
        torch.testing.assert_close(a[:, :-1], b[:, :-1])
        a, b = model(idx, causal=False), model(changed, causal=False)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-6


def test_rope_scores_depend_only_on_relative_position() -> None:
    cos, sin = rope_tables(32, 8, 10_000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pos_q: int, pos_k: int) -> torch.Tensor:
        rq = apply_rope(q, cos[pos_q : pos_q + 1], sin[pos_q : pos_q + 1])
        rk = apply_rope(k, cos[pos_k : pos_k + 1], sin[pos_k : pos_k + 1])
        return (rq * rk).sum()

    torch.testing.assert_close(score(5, 2), score(20, 17))
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_inputs_longer_than_seq_len_extend_rope() -> None:
    torch.manual_seed(0)
    model = Transformer(_tiny())
    idx = torch.randint(0, VOCAB, (2, SEQ + 1))
    with torch.no_grad():
        long, short = model(idx, causal=True), model(idx[:, :SEQ], causal=True)
    torch.testing.assert_close(long[:, :SEQ], short)


def test_meta_build_then_init_matches_a_seeded_init() -> None:
    cfg = _tiny()
    with torch.device("meta"):
        meta_model = Transformer(cfg)
    assert meta_model.tok_emb.weight.is_meta
    meta_model.to_empty(device="cpu")
    torch.manual_seed(7)
    meta_model.init_weights()
    cpu_model = Transformer(cfg)
    torch.manual_seed(7)
    cpu_model.init_weights()
    for (name, p), (_, q) in zip(
        meta_model.state_dict().items(), cpu_model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    torch.testing.assert_close(meta_model.rope_cos, cpu_model.rope_cos)


def test_num_params_against_hand_count() -> None:
    cfg = _tiny()
    model = Transformer(cfg)
    d, h, L, V = cfg.d_model, cfg.ffn_hidden, cfg.depth, cfg.vocab_size
    per_block = 4 * d * d + 3 * d * h + 2 * d  # qkv + o, SwiGLU, two norms
    assert model.num_params(include_embedding=False) == L * per_block + d
    assert model.num_params() == L * per_block + d + 2 * V * d
    tied = Transformer(_tiny(tie_embeddings=True))
    assert tied.num_params() == L * per_block + d + V * d
    assert tied.num_params(include_embedding=False) == L * per_block + d
    assert model.num_active_params() == model.num_params()


def test_moe_active_params_and_aux_loss() -> None:
    torch.manual_seed(0)
    moe = MoEConfig(n_experts=4, top_k=1, aux_loss_coef=0.01)
    model = Transformer(_tiny(moe=moe))
    dense = Transformer(_tiny())
    assert float(dense.aux_loss()) == 0.0
    per_expert = 3 * model.cfg.d_model * model.cfg.ffn_hidden
    router = model.cfg.d_model * 4
    extra = model.cfg.depth * (4 * per_expert + router - per_expert)
    assert model.num_params() == dense.num_params() + extra
    assert model.num_active_params() == dense.num_params() + model.cfg.depth * router
    logits = model(torch.randint(0, VOCAB, (2, SEQ)), causal=False)
    aux = model.aux_loss()
    # Switch loss is >= coef * n_layers (equality at perfect balance) since sum f*P >= 1/E here.
    assert float(aux.detach()) >= 0.01 * model.cfg.depth * 0.5
    (logits.mean() + aux).backward()
    assert model.layers[0].ffn.router.weight.grad.abs().sum() > 0


def test_presets_are_one_knob_and_tiny_is_tiny() -> None:
    names = list_presets()
    assert {"tiny", "xs", "s", "150m", "1b", "1.7b"} <= set(names)
    counts = []
    for name in names:
        cfg = model_preset(name, 1000, 64)
        assert cfg.d_model % cfg.n_heads == 0
        with torch.device("meta"):
            counts.append(Transformer(cfg).num_params(include_embedding=False))
    assert counts == sorted(counts)
    for name in ("tiny", "xs", "s"):
        assert counts[names.index(name)] < 1_000_000
    assert 1.5e9 < counts[names.index("1.7b")] < 1.9e9


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="name"):
        model_preset("nope", 10, 8)
    with pytest.raises(ValidationError, match="n_heads"):
        ModelConfig(
            name="x", vocab_size=10, seq_len=8, depth=1, d_model=10, n_heads=3, ffn_hidden=8
        )
    with pytest.raises(ValidationError, match="bogus"):
        ModelConfig(
            name="x", vocab_size=10, seq_len=8, depth=1, d_model=8, n_heads=2, ffn_hidden=8, bogus=1
        )


def test_model_files_import_nothing_from_torch_distributed() -> None:
    src = Path(training_core.__file__).parent
    for name in ("model.py", "attention.py", "moe.py"):
        tree = ast.parse((src / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not any(m.startswith("torch.distributed") for m in mods), (name, mods)
