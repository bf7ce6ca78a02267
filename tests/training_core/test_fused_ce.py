"""Fused LM head + cross-entropy equals the plain path, alone and through both objectives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from trainer_fixtures import tiny_config, tiny_data

from training_core import train_run
from training_core.config import RunConfig
from training_core.fused_ce import (
    chunked_linear_cross_entropy,
    liger_available,
    linear_cross_entropy,
)
from training_core.model import Transformer, model_preset
from training_core.objectives import ObjectiveConfig, build_objective

torch.set_num_threads(1)
DATA_VOCAB = 97
SEQ = 16


def _grads(model: Transformer) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_matches_plain_with_per_token_weights(chunk: int) -> None:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(50, 24, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(DATA_VOCAB, 24, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, DATA_VOCAB, (50,), generator=gen)
    # Arbitrary per-token weights with zeros: the DLM's mask / p_mask is one such weighting.
    weights = torch.rand(50, generator=gen, dtype=torch.float64) * (torch.rand(50) < 0.6)

    ref = (F.cross_entropy(h @ w.T, targets, reduction="none") * weights).sum()
    (3.0 * ref).backward()  # an upstream gradient != 1 must scale the precomputed gradients
    ref_gh, ref_gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None

    loss = chunked_linear_cross_entropy(h, w, targets, weights, chunk=chunk)
    (3.0 * loss).backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h.grad, ref_gh, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, ref_gw, rtol=1e-10, atol=1e-12)


def test_chunked_without_grad_mode_returns_the_loss_only() -> None:
    h, w = torch.randn(6, 4, requires_grad=True), torch.randn(9, 4, requires_grad=True)
    targets, weights = torch.randint(0, 9, (6,)), torch.full((6,), 1 / 6)
    with torch.no_grad():
        loss = chunked_linear_cross_entropy(h, w, targets, weights, chunk=4)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(h @ w.T, targets).detach())


def test_chunked_passes_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(9, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (9,), generator=gen)
    weights = torch.rand(9, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: chunked_linear_cross_entropy(a, b, targets, weights, chunk=4), (h, w)
    )


def test_chunked_under_cpu_bf16_autocast_is_close_to_plain() -> None:
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(64, 32, generator=gen, requires_grad=True)
    w = (torch.randn(DATA_VOCAB, 32, generator=gen) * 0.2).requires_grad_()
    targets = torch.randint(0, DATA_VOCAB, (64,), generator=gen)
    weights = torch.full((64,), 1 / 64)
    outs = {}
    for impl in ("plain", "chunked"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = linear_cross_entropy(h, w, targets, weights, impl)
        loss.backward()
        outs[impl] = (loss.detach(), h.grad.clone(), w.grad.clone())
        h.grad = w.grad = None
    for ref, got in zip(outs["plain"], outs["chunked"], strict=True):
        torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(
    "objective",
    [
        ObjectiveConfig(kind="ar"),
        ObjectiveConfig(kind="ar", ar_input_noise=0.2),
        ObjectiveConfig(kind="dlm", dlm_variant="smdm"),
        ObjectiveConfig(kind="dlm", dlm_variant="seed"),
    ],
    ids=["ar", "ar-noise", "dlm-smdm", "dlm-seed"],
)
def test_objective_loss_and_grads_equal_plain(objective: ObjectiveConfig) -> None:
    torch.manual_seed(0)
    model = Transformer(model_preset("tiny", DATA_VOCAB + 1, SEQ))  # fp32: the head's dtype
    tokens = torch.randint(0, DATA_VOCAB, (6, SEQ + 1))
    results = {}
    for impl in ("plain", "chunked"):
        model.zero_grad(set_to_none=True)
        obj = build_objective(objective, DATA_VOCAB, loss_impl=impl)
        loss, stats = obj.loss(model, tokens, torch.Generator().manual_seed(5))
        loss.backward()
        results[impl] = (loss.detach(), stats, _grads(model))
    (l_ref, s_ref, g_ref), (l_got, s_got, g_got) = results["plain"], results["chunked"]
    torch.testing.assert_close(l_got, l_ref, rtol=1e-6, atol=1e-6)
    assert s_got == pytest.approx(s_ref, rel=1e-5)
    assert g_got.keys() == g_ref.keys() and "lm_head.weight" in g_got
    for name in g_ref:  # the hidden-state gradient reaches every layer below the head
        torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-4, atol=1e-7, msg=name)


def test_loss_impl_is_not_hashed_and_is_validated(tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data(tmp_path))
    assert tiny_config(tiny_data(tmp_path), loss_impl="chunked").run_id == cfg.run_id
    with pytest.raises(ValueError, match="loss_impl"):
        RunConfig.from_dict({**cfg.model_dump(mode="json"), "loss_impl": "fast"})
    with pytest.raises(ValueError, match="loss_impl"):
        build_objective(ObjectiveConfig(kind="ar"), DATA_VOCAB, loss_impl="fast")


@pytest.mark.parametrize("kind", ["ar", "dlm"])
def test_train_run_with_chunked_loss_follows_the_plain_run(tmp_path: Path, kind: str) -> None:
    data = tiny_data(tmp_path, mc=False)
    losses = {}
    for impl in ("plain", "chunked"):
        cfg = tiny_config(data, kind, loss_impl=impl, epochs=1.0)
        result = train_run(cfg, tmp_path / impl)
        assert result.status == "completed"
        losses[impl] = pd.read_parquet(tmp_path / impl / "metrics.parquet")["train_loss"]
    # fp32 on one thread: only summation order differs, over a handful of steps.
    np.testing.assert_allclose(losses["chunked"], losses["plain"], rtol=1e-4)


def test_liger_refuses_cpu_tensors_with_a_clear_error() -> None:
    h, w = torch.randn(4, 8), torch.randn(10, 8)
    with pytest.raises(ValueError, match="loss_impl: 'liger' needs CUDA"):
        linear_cross_entropy(h, w, torch.zeros(4, dtype=torch.long), torch.ones(4), "liger")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("impl", ["chunked", "liger"])
def test_cuda_bf16_fused_paths_agree_with_plain(impl: str) -> None:
    if impl == "liger" and not liger_available():
        pytest.skip("needs liger-kernel (pip install '.[gpu]')")
    gen = torch.Generator(device="cuda").manual_seed(0)
    h = torch.randn(4096, 256, device="cuda", generator=gen, requires_grad=True)
    w = (torch.randn(50304, 256, device="cuda", generator=gen) * 0.06).requires_grad_()
    targets = torch.randint(0, 50304, (4096,), device="cuda", generator=gen)
    weights = torch.rand(4096, device="cuda", generator=gen) * (torch.rand(4096) < 0.5).cuda()
    outs = {}
    for name in ("plain", impl):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = linear_cross_entropy(h, w, targets, weights, name)
        loss.backward()
        outs[name] = (loss.detach().float(), h.grad.clone(), w.grad.clone())
        h.grad = w.grad = None
    for ref, got in zip(outs["plain"], outs[impl], strict=True):
        torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-2)
