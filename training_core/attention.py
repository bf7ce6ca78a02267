"""One attention adapter: flash-attn on CUDA when it is installed, PyTorch SDPA everywhere else.

Both take and return ``(B, T, H, D)`` (flash-attn's layout), so the model never branches on the
backend. SDPA is the CPU default and the reference.
"""

from __future__ import annotations

import importlib.util
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor


@cache
def _flash_attn_importable() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def available_backends() -> list[str]:
    """Backends usable on this machine, fastest first: ``["flash", "sdpa"]`` or ``["sdpa"]``."""
    if torch.cuda.is_available() and _flash_attn_importable():
        return ["flash", "sdpa"]
    return ["sdpa"]


def default_backend(q: Tensor) -> str:
    """flash-attn needs CUDA tensors in fp16/bf16; anything else goes to SDPA."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and _flash_attn_importable():
        return "flash"
    return "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, backend: str | None = None) -> Tensor:
    """Softmax attention of ``q, k, v`` each ``(B, T, H, D)``; returns ``(B, T, H, D)``.

    ``backend`` ("flash" | "sdpa") forces one path (tests compare them); None picks the fastest.
    """
    backend = backend or default_backend(q)
    if backend == "flash":
        from flash_attn import flash_attn_func  # optional dependency, GPU images only

        return flash_attn_func(q, k, v, causal=causal)
    if backend != "sdpa":
        raise ValueError(f"backend must be 'flash' or 'sdpa', got {backend!r}")
    # SDPA wants (B, H, T, D).
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
    )
    return out.transpose(1, 2)  # (B, T, H, D)
