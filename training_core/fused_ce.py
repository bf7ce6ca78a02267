"""LM head + cross-entropy without materialising the (tokens x vocab) logits.

At the paper's vocabularies (50K-150K) the logits dominate activation memory: 8 sequences of
2048 tokens at V = 50,304 are 16,384 x 50,304 fp32 = 3.3 GB, plus their gradient. Both
objectives score through the same function, so AR and DLM share one code path:

    ce = linear_cross_entropy(h, head_weight, targets, impl)   # (N,) fp32, per token

- ``plain``: ``h @ W^T`` then ``F.cross_entropy`` (the reference; what ``Transformer.forward``
  computes).
- ``chunked``: our own autograd Function. The forward runs the head matmul and the log-sum-exp
  chunk by chunk and keeps only the per-token log-sum-exp (N floats); the backward recomputes
  each chunk's logits, forms ``(softmax - onehot) * grad_ce`` and accumulates the gradients of
  ``h`` and ``W``. Peak extra memory is one chunk of logits; the price is one extra head
  matmul (4 instead of 3). Works on CPU and CUDA, under autocast (matmuls in the autocast dtype,
  softmax in fp32, like the plain path).
- ``liger``: liger-kernel's Triton fused linear cross-entropy (CUDA only; the optional ``gpu``
  extra), with ``reduction="none"`` so the objectives weight tokens exactly as in the plain path.

The result is per token, so the caller applies any weighting (AR: mean; DLM: mask / p_mask).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossImpl = Literal["plain", "chunked", "liger"]
LOSS_IMPLS: tuple[str, ...] = ("plain", "chunked", "liger")
_CHUNK_ELEMENTS = 1 << 26  # logits per chunk: 64M fp32 = 256 MiB (1,334 tokens at V = 50,304)


@cache
def liger_available() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def compute_dtype(h: Tensor) -> torch.dtype:
    """The dtype the head matmul runs in: the autocast dtype when autocast is on, else ``h``'s."""
    kind = h.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return h.dtype


def _softmax_dtype(cdt: torch.dtype) -> torch.dtype:
    """Log-softmax and gradient accumulation run in fp32 at least (fp64 stays fp64)."""
    return torch.promote_types(cdt, torch.float32)


class _ChunkedLinearCE(torch.autograd.Function):
    """Per-token CE of ``h @ w.T`` against ``targets``; logits live one chunk at a time."""

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, targets: Tensor, chunk: int, cdt: torch.dtype):
        N, acc = h.shape[0], _softmax_dtype(cdt)
        ce = torch.empty(N, dtype=acc, device=h.device)
        lse = torch.empty(N, dtype=acc, device=h.device)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cdt), w.to(cdt)
            for s in range(0, N, chunk):
                logits = (hc[s : s + chunk] @ wc.T).to(acc)  # (c, V)
                lse_c = torch.logsumexp(logits, dim=-1)  # (c,)
                picked = logits.gather(1, targets[s : s + chunk, None]).squeeze(1)
                lse[s : s + chunk] = lse_c
                ce[s : s + chunk] = lse_c - picked
        ctx.save_for_backward(h, w, targets, lse)
        ctx.chunk, ctx.cdt = chunk, cdt
        return ce

    @staticmethod
    def backward(ctx, grad_ce: Tensor):
        h, w, targets, lse = ctx.saved_tensors
        chunk, cdt = ctx.chunk, ctx.cdt
        need_h = ctx.needs_input_grad[0]
        grad_h = torch.empty(h.shape, dtype=cdt, device=h.device) if need_h else None
        acc = lse.dtype
        grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cdt), w.to(cdt)
            for s in range(0, h.shape[0], chunk):
                h_c, t_c = hc[s : s + chunk], targets[s : s + chunk]
                probs = torch.exp((h_c @ wc.T).to(acc) - lse[s : s + chunk, None])  # (c, V)
                probs[torch.arange(len(t_c), device=h.device), t_c] -= 1.0  # softmax - onehot
                g = (probs * grad_ce[s : s + chunk, None].to(acc)).to(cdt)  # dL/dlogits (c, V)
                if grad_h is not None:
                    grad_h[s : s + chunk] = g @ wc  # (c, d)
                if ctx.needs_input_grad[1]:
                    grad_w += (g.T @ h_c).to(acc)  # (V, d)
        grad_h = grad_h.to(h.dtype) if grad_h is not None else None
        grad_w = grad_w.to(w.dtype) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None, None, None


def chunked_linear_cross_entropy(
    h: Tensor, weight: Tensor, targets: Tensor, chunk: int | None = None
) -> Tensor:
    """Per-token CE ``(N,)`` (fp32, or fp64 for fp64 inputs) of ``h (N, d) @ weight (V, d)^T``,
    ``chunk`` tokens at a time (default: 64M logits per chunk)."""
    chunk = chunk or max(1, _CHUNK_ELEMENTS // weight.shape[0])
    return _ChunkedLinearCE.apply(h, weight, targets, chunk, compute_dtype(h))


def _liger_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    if not h.is_cuda:
        raise ValueError("loss_impl: 'liger' needs CUDA tensors; use 'chunked' on the CPU")
    if not liger_available():
        raise ValueError("loss_impl: 'liger' needs liger-kernel (pip install '.[gpu]')")
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    cdt = compute_dtype(h)
    loss_fn = LigerFusedLinearCrossEntropyLoss(reduction="none", accum_dtype=torch.float32)
    return loss_fn(weight.to(cdt), h.to(cdt), targets).float()


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor, impl: str) -> Tensor:
    """Per-token cross-entropy ``(N,)`` fp32 of the LM head ``weight`` (V, d) on ``h`` (N, d)."""
    if impl == "plain":
        logits = F.linear(h, weight).float()  # (N, V)
        return F.cross_entropy(logits, targets, reduction="none")
    if impl == "chunked":
        return chunked_linear_cross_entropy(h, weight, targets)
    if impl == "liger":
        return _liger_cross_entropy(h, weight, targets)
    raise ValueError(f"loss_impl: must be one of {list(LOSS_IMPLS)}, got {impl!r}")
