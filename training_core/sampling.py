"""Look at what a model learned: AR sampling and DLM iterative unmasking.

Both recompute the whole context each step (no KV cache): these are for inspection, not serving.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _as_batch(prompt: Tensor) -> Tensor:
    return prompt[None] if prompt.dim() == 1 else prompt  # (B, P)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample_ar(
    model: nn.Module,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    gen: torch.Generator | None = None,
    mask_id: int | None = None,
) -> Tensor:
    """Extend ``prompt`` (P,) or (B, P) by ``max_new_tokens``; returns (B, P + new).

    ``temperature`` 0 is greedy; ``top_k`` keeps the k most likely tokens; ``mask_id`` (the DLM's
    extra embedding row, never a real token) is never sampled when given.
    """
    x = _as_batch(prompt).to(_device(model))
    seq_len = getattr(getattr(model, "cfg", None), "seq_len", None)
    for _ in range(max_new_tokens):
        window = x if seq_len is None else x[:, -seq_len:]
        logits = model(window, causal=True)[:, -1]  # (B, V)
        if mask_id is not None:
            logits[:, mask_id] = float("-inf")
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(dim=-1).to(gen.device if gen is not None else x.device)
            nxt = torch.multinomial(probs, 1, generator=gen).to(x.device)  # (B, 1)
        x = torch.cat((x, nxt), dim=1)
    return x


def _per_step_counts(gen_len: int, steps: int) -> list[int]:
    """Split ``gen_len`` commits over ``steps`` as evenly as possible, larger counts first."""
    base, extra = divmod(gen_len, steps)
    return [base + (1 if s < extra else 0) for s in range(steps)]


@torch.no_grad()
def sample_dlm(
    model: nn.Module,
    prompt: Tensor,
    gen_len: int,
    steps: int,
    mask_id: int,
    gen: torch.Generator | None = None,
    temperature: float = 0.0,
) -> Tensor:
    """Iterative unmasking with low-confidence remasking (LLaDA); returns (B, P + gen_len).

    Start from ``gen_len`` mask tokens after the prompt. Each step predicts every masked
    position, commits the ``gen_len / steps`` most confident predictions and leaves the rest
    masked. ``temperature`` > 0 samples the predictions (Gumbel-max) instead of argmax.
    """
    x = _as_batch(prompt).to(_device(model))
    B, P = x.shape
    x = torch.cat((x, torch.full((B, gen_len), mask_id, dtype=x.dtype, device=x.device)), dim=1)
    for n_commit in _per_step_counts(gen_len, max(1, min(steps, gen_len))):
        masked = x == mask_id  # (B, P + gen_len)
        logits = model(x, causal=False).double()  # (B, T, V)
        logits[..., mask_id] = float("-inf")  # never "predict" the mask token itself
        if temperature > 0:
            u = torch.rand(
                logits.shape, generator=gen, device=gen.device if gen is not None else x.device
            )
            gumbel = -torch.log(-torch.log(u.to(x.device).double().clamp_min(1e-20)))
            pred = (logits / temperature + gumbel).argmax(dim=-1)
        else:
            pred = logits.argmax(dim=-1)  # (B, T)
        conf = logits.softmax(dim=-1).gather(-1, pred[..., None])[..., 0]  # (B, T)
        conf = conf.masked_fill(~masked, float("-inf"))  # only masked positions compete
        commit_idx = conf.topk(n_commit, dim=-1).indices  # (B, n_commit)
        commit = torch.zeros_like(masked).scatter_(1, commit_idx, True) & masked
        x = torch.where(commit, pred, x)
    return x
