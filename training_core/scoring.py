"""Multiple-choice scoring: AR log-likelihood, and the LLaDA-style estimator for the DLM.

A score is a log-likelihood (AR: exact; DLM: a Monte Carlo lower bound, the negated ELBO of the
answer given the context). Higher is better; the predicted choice is the argmax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _max_len(model: nn.Module) -> int | None:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "seq_len", None)


def _fit(context: Sequence[int], answer_len: int, max_len: int | None) -> list[int]:
    """Keep the end of the context so context + answer fits ``max_len`` (the answer never cut)."""
    if answer_len == 0:
        raise ValueError("choices: every choice needs at least one token")
    context = [int(x) for x in context]
    if max_len is not None and len(context) + answer_len > max_len:
        keep = max(max_len - answer_len, 0)
        context = context[len(context) - keep :] if keep else []
    return context


@torch.no_grad()
def score_choices_ar(
    model: nn.Module, context: Sequence[int], choices: Sequence[Sequence[int]]
) -> list[float]:
    """Sum over each choice's tokens of log p(token | context, previous answer tokens).

    All choices go in one right-padded batch: under the causal mask padding cannot leak back.
    """
    max_len = _max_len(model)
    # The model reads seq[:-1]; allow one extra token so inputs fit seq_len.
    seqs = []
    for choice in choices:
        ctx = _fit(context, len(choice), None if max_len is None else max_len + 1)
        if not ctx:
            raise ValueError("context: AR scoring needs at least one context token")
        seqs.append(ctx + [int(x) for x in choice])
    width = max(len(s) for s in seqs)
    batch = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.tensor(s)
    batch = batch.to(_device(model))
    logp = F.log_softmax(model(batch[:, :-1], causal=True), dim=-1)  # (C, W-1, V)
    scores = []
    for i, (s, choice) in enumerate(zip(seqs, choices, strict=True)):
        # Targets s[n-L:] are predicted at input positions n-L-1 .. n-2.
        n, L = len(s), len(choice)
        pos = torch.arange(n - L - 1, n - 1, device=batch.device)
        scores.append(float(logp[i, pos, batch[i, pos + 1]].sum()))
    return scores


@torch.no_grad()
def score_choices_dlm(
    model: nn.Module,
    context: Sequence[int],
    choices: Sequence[Sequence[int]],
    mask_id: int,
    n_samples: int = 128,
    gen: torch.Generator | None = None,
    batch_size: int = 64,
) -> list[float]:
    """LLaDA-style lower bound on log p(choice | context), one per choice.

    Per sample j: l_j answer tokens masked (context never), l_j stratified over 1..L
    (l_j = 1 + floor((j + u) / n * L)), positions uniform without replacement; the NLL estimate
    is E_j[(L / l_j) * sum of CE over the masked answer tokens]. Returns its negation.
    """
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    device = _device(model)
    scores = []
    for choice in choices:
        L = len(choice)
        seq = _fit(context, L, _max_len(model)) + [int(x) for x in choice]
        n_ctx = len(seq) - L
        u = float(torch.rand((1,), generator=gen, device=gen.device))
        j = torch.arange(n_samples, dtype=torch.float64)
        n_masked = (1 + torch.floor((j + u) / n_samples * L)).long().clamp(max=L)  # (n,)
        # Uniform random ranks per row (argsort of argsort); mask the answer positions ranked < l_j.
        noise = torch.rand((n_samples, L), generator=gen, device=gen.device).cpu()
        ranks = noise.argsort(dim=1).argsort(dim=1)  # (n, L)
        answer_mask = ranks < n_masked[:, None]  # (n, L), exactly l_j True in row j
        full = torch.tensor(seq).repeat(n_samples, 1)  # (n, len(seq))
        mask = torch.zeros_like(full, dtype=torch.bool)
        mask[:, n_ctx:] = answer_mask
        total = 0.0
        for start in range(0, n_samples, batch_size):
            rows = slice(start, start + batch_size)
            clean, m = full[rows].to(device), mask[rows].to(device)
            noisy = torch.where(m, torch.full_like(clean, mask_id), clean)
            logits = model(noisy, causal=False)  # (b, len, V)
            ce = F.cross_entropy(logits.transpose(1, 2), clean, reduction="none")  # (b, len)
            weight = (L / n_masked[rows].to(device).double())[:, None]
            total += float(((ce * m).double() * weight).sum())
        scores.append(-total / n_samples)
    return scores


def _as_ints(xs: Any) -> list[int]:
    return [int(x) for x in xs]


@torch.no_grad()
def mc_accuracy(
    model: nn.Module,
    items: Sequence[Mapping[str, Any]],
    objective_kind: Literal["ar", "dlm"],
    mask_id: int | None = None,
    n_samples: int = 128,
    gen: torch.Generator | None = None,
) -> dict[str, float]:
    """Accuracy and mean margin (score(correct) - max score(wrong)) over items with >= 2 choices.

    ``items``: rows of ``eval_mc.parquet`` (``context``, ``choices``, ``label``).
    """
    if objective_kind == "dlm" and mask_id is None:
        raise ValueError("mask_id: required for objective_kind='dlm'")
    correct, margins = 0, []
    for item in items:
        choices = [_as_ints(c) for c in item["choices"]]
        if len(choices) < 2:
            continue
        context, label = _as_ints(item["context"]), int(item["label"])
        if objective_kind == "ar":
            scores = score_choices_ar(model, context, choices)
        else:
            scores = score_choices_dlm(model, context, choices, mask_id, n_samples, gen)
        best_wrong = max(s for i, s in enumerate(scores) if i != label)
        margins.append(scores[label] - best_wrong)
        correct += int(scores[label] > best_wrong)
    n = len(margins)
    return {
        "acc": correct / n if n else float("nan"),
        "margin": sum(margins) / n if n else float("nan"),
        "n": n,
    }
