"""Attention adapter: SDPA matches a naive reference on the CPU; flash-attn matches SDPA on CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from training_core.attention import attention, available_backends, default_backend

torch.set_num_threads(1)


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> torch.Tensor:
    """Loop-free but textbook: softmax(q k^T / sqrt(D) + mask) v on (B, T, H, D) inputs."""
    B, T, H, D = q.shape
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)  # (B, H, T, T)
    if causal:
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v)  # (B, T, H, D)


@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_matches_naive_reference(causal: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 7, 3, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    out = attention(q, k, v, causal=causal)
    assert out.shape == (2, 7, 3, 8)
    torch.testing.assert_close(out, naive_attention(q, k, v, causal))


def test_cpu_default_is_sdpa_and_unknown_backend_is_rejected() -> None:
    # CPU tensors of every dtype go to SDPA whatever is installed (flash-attn is CUDA-only), and
    # the default path is exactly the forced SDPA one.
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        q, k, v = (torch.randn(2, 5, 3, 8, generator=gen).to(dtype) for _ in range(3))
        assert default_backend(q) == "sdpa"
        assert torch.equal(attention(q, k, v, causal=True), attention(q, k, v, True, "sdpa"))
    if not torch.cuda.is_available():
        assert available_backends() == ["sdpa"]
    q = torch.randn(1, 2, 1, 4)
    with pytest.raises(ValueError, match="backend"):
        attention(q, q, q, causal=True, backend="xformers")


@pytest.mark.gpu
@pytest.mark.skipif(
    "flash" not in available_backends(), reason="needs CUDA and flash-attn (pip install .[gpu])"
)
@pytest.mark.parametrize("causal", [True, False])
def test_flash_attn_matches_sdpa(causal: bool) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (2, 256, 4, 64)
    q, k, v = (
        torch.randn(shape, generator=gen, device="cuda", dtype=torch.bfloat16) for _ in range(3)
    )
    flash = attention(q, k, v, causal=causal, backend="flash")
    sdpa = attention(q, k, v, causal=causal, backend="sdpa")
    torch.testing.assert_close(flash.float(), sdpa.float(), atol=2e-2, rtol=2e-2)
