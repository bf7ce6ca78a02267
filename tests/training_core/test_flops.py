"""Parameter counts and FLOPs per token against the built model and torch's FLOP counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from training_core.flops import attention_flops_per_token, flops_per_token, param_counts
from training_core.model import Transformer, list_presets, model_preset
from training_core.moe import MoEConfig

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list_presets())
def test_param_counts_match_the_built_model(name: str) -> None:
    cfg = model_preset(name, 1001, 64)
    with torch.device("meta"):
        model = Transformer(cfg)
    counts = param_counts(cfg)
    assert counts["total"] == model.num_params()
    assert counts["non_embedding"] == model.num_params(include_embedding=False)
    assert counts["active"] == counts["total"] == model.num_active_params()


@pytest.mark.parametrize("tie", [True, False])
def test_param_counts_match_for_moe_and_tied(tie: bool) -> None:
    moe = MoEConfig(n_experts=4, top_k=2)
    cfg = model_preset("xs", 77, 32, moe=moe).model_copy(update={"tie_embeddings": tie})
    model = Transformer(cfg)
    counts = param_counts(cfg)
    assert counts["total"] == model.num_params()
    assert counts["non_embedding"] == model.num_params(include_embedding=False)
    assert counts["active"] == model.num_active_params()
    assert counts["active_non_embedding"] == model.num_active_params(include_embedding=False)
    assert counts["active"] < counts["total"]


def test_flops_match_torch_flop_counter() -> None:
    """One forward+backward of T tokens, counted by torch: the linear layers give exactly
    T * 6 * N_matmul, and textbook (bidirectional) attention gives T * the attention term.

    torch's counter does not see the CPU SDPA kernel, so attention is counted on a textbook
    einsum version for one layer.
    """
    torch.manual_seed(0)
    cfg = model_preset("tiny", 50, 24)
    model = Transformer(cfg)
    T = cfg.seq_len
    idx = torch.randint(0, 50, (1, T))
    with FlopCounterMode(display=False) as counter:
        model(idx, causal=False).sum().backward()
    attn = attention_flops_per_token(cfg, causal=False)
    assert counter.get_total_flops() == pytest.approx((flops_per_token(cfg, False) - attn) * T)

    q, k, v = (torch.randn(1, T, cfg.n_heads, cfg.head_dim, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as counter:
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k).softmax(dim=-1)  # (B, H, T, T)
        torch.einsum("bhqk,bkhd->bqhd", scores, v).sum().backward()
    assert counter.get_total_flops() * cfg.depth == pytest.approx(attn * T)


def test_causal_attention_is_counted_as_half() -> None:
    cfg = model_preset("s", 100, 128)
    full = attention_flops_per_token(cfg, causal=False)
    assert full == 12 * cfg.depth * cfg.seq_len * cfg.d_model
    assert attention_flops_per_token(cfg, causal=True) == full / 2
    gap = flops_per_token(cfg, causal=False) - flops_per_token(cfg, causal=True)
    assert gap == pytest.approx(full / 2)
