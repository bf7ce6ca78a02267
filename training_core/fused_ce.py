"""LM head + cross-entropy without materialising the (tokens x vocab) logits.

At the paper's vocabularies (50K-150K) the logits dominate activation memory: 8 sequences of
2048 tokens at V = 50,304 are 16,384 x 50,304 fp32 = 3.3 GB, plus their gradient. Both
objectives score through the same function, so AR and DLM share one code path:

    loss = linear_cross_entropy(h, head_weight, targets, weights, impl)   # sum w_i * CE_i

- ``plain``: ``h @ W^T`` then ``F.cross_entropy`` (the reference; what ``Transformer.forward``
  computes).
- ``chunked``: our own autograd Function. The per-token weights are constants, so the forward
  computes loss and gradients together, chunk by chunk: logits -> log-sum-exp -> CE, then
  ``(softmax - onehot) * weights`` into grad_h and grad_w (3 matmuls, as the plain path). Peak
  extra memory is one chunk of logits plus the gradients themselves. Works on CPU and CUDA,
  under autocast (matmuls in the autocast dtype, softmax in fp32, like the plain path).
- ``liger``: liger-kernel's Triton fused linear cross-entropy (CUDA only; the optional ``gpu``
  extra) with ``reduction="none"``, weighted here exactly as in the plain path.

AR passes weights 1/N (the mean CE); the DLM mask / (p_mask * B * T): one code path for both.
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
    """sum_i weights_i * CE(h_i @ w.T, targets_i); logits live one chunk at a time.

    The weights are constants (AR: 1/N; DLM: mask / (p_mask * B * T)), so the gradients are
    known in the forward: each chunk's ``(softmax - onehot) * weights`` goes straight into
    grad_h and grad_w (3 matmuls, as the plain path; no recompute), and the backward only scales
    them by the incoming scalar gradient.
    """

    @staticmethod
    def forward(ctx, h, w, targets, weights, chunk: int, cdt: torch.dtype, want_grad: bool):
        acc = _softmax_dtype(cdt)
        total = torch.zeros((), dtype=acc, device=h.device)
        grad_h = torch.empty(h.shape, dtype=cdt, device=h.device) if want_grad else None
        grad_w = torch.zeros(w.shape, dtype=acc, device=w.device) if want_grad else None
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(cdt), w.to(cdt)
            for s in range(0, h.shape[0], chunk):
                h_c, t_c, w_c = hc[s : s + chunk], targets[s : s + chunk], weights[s : s + chunk]
                logits = (h_c @ wc.T).to(acc)  # (c, V)
                lse = torch.logsumexp(logits, dim=-1)  # (c,)
                ce = lse - logits.gather(1, t_c[:, None]).squeeze(1)  # (c,)
                total += (ce * w_c.to(acc)).sum()
                if not want_grad:
                    continue
                probs = torch.exp(logits.sub_(lse[:, None]))  # softmax, in place of the logits
                probs[torch.arange(len(t_c), device=h.device), t_c] -= 1.0  # - onehot
                g = (probs * w_c[:, None].to(acc)).to(cdt)  # dL/dlogits (c, V)
                grad_h[s : s + chunk] = g @ wc  # (c, d)
                grad_w += (g.T @ h_c).to(acc)  # (V, d)
        ctx.save_for_backward(*(t if t is not None else torch.empty(0) for t in (grad_h, grad_w)))
        ctx.dtypes = (h.dtype, w.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        acc = grad_w.dtype  # fp32 (fp64 for fp64 inputs)
        gh = (grad_h.to(acc) * grad_out).to(h_dtype) if ctx.needs_input_grad[0] else None
        gw = (grad_w * grad_out).to(w_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None, None, None


def chunked_linear_cross_entropy(
    h: Tensor, weight: Tensor, targets: Tensor, weights: Tensor, chunk: int | None = None
) -> Tensor:
    """sum_i weights_i * CE_i (a scalar, fp32; fp64 for fp64 inputs) of ``h (N, d) @ weight
    (V, d)^T`` against ``targets (N,)``, ``chunk`` tokens at a time (default: 64M logits)."""
    chunk = chunk or max(1, _CHUNK_ELEMENTS // weight.shape[0])
    # Grad mode is off inside Function.forward: decide here whether gradients are wanted.
    want_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _ChunkedLinearCE.apply(
        h, weight, targets, weights.detach(), chunk, compute_dtype(h), want_grad
    )


def _liger_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    if not h.is_cuda:
        raise ValueError("loss_impl: 'liger' needs CUDA tensors; use 'chunked' on the CPU")
    if not liger_available():
        raise ValueError("loss_impl: 'liger' needs liger-kernel (pip install '.[gpu]')")
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    cdt = compute_dtype(h)
    loss_fn = LigerFusedLinearCrossEntropyLoss(reduction="none", accum_dtype=torch.float32)
    return loss_fn(weight.to(cdt), h.to(cdt), targets).float()


def linear_cross_entropy(
    h: Tensor, weight: Tensor, targets: Tensor, weights: Tensor, impl: str
) -> Tensor:
    """sum_i weights_i * CE_i of the LM head ``weight`` (V, d) on ``h`` (N, d): a scalar.

    ``weights`` (N,) are constants: AR passes 1/N (the mean), the DLM mask / (p_mask * B * T).
    """
    if impl == "plain":
        logits = F.linear(h, weight).float()  # (N, V)
        return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()
    if impl == "chunked":
        return chunked_linear_cross_entropy(h, weight, targets, weights)
    if impl == "liger":
        return (_liger_cross_entropy(h, weight, targets) * weights).sum()
    raise ValueError(f"loss_impl: must be one of {list(LOSS_IMPLS)}, got {impl!r}")
