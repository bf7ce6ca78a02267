"""Evaluation: when to evaluate, and one evaluation (validation loss, multiple-choice accuracy).

The validation loss is the AR NLL for a causal objective and the DLM ELBO (Monte Carlo, stratified
t, fixed seed, with its standard error) otherwise; both in nats per token. The generator is
re-seeded identically at every evaluation, so successive evals of one run share their noise and
their differences reflect the model, not the Monte Carlo draw.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from training_core.config import EvalConfig, RunConfig
from training_core.data import TokenWindows, TrainSchedule, derived_seed
from training_core.objectives import ar_nll, dlm_elbo
from training_core.scoring import mc_accuracy

_VAL_NOISE, _MC_NOISE = 2, 3  # derived_seed stream tags (training uses 1)


@dataclass(frozen=True)
class EvalData:
    """What every evaluation of a run reads: validation windows and multiple-choice items."""

    val: torch.Tensor | None  # (N, seq_len) int64 on the CPU; None when there are no val files
    mc_items: list[dict[str, Any]]  # rows of eval_mc.parquet: context, choices, label


def load_eval_data(cfg: RunConfig) -> EvalData:
    val = None
    if cfg.data.val_files:
        windows = TokenWindows(
            cfg.data.val_files,
            cfg.data.token_dtype,
            cfg.model.seq_len,
            max_tokens=cfg.eval.val_max_tokens,
        )
        val = windows.all() if len(windows) else None
    items: list[dict[str, Any]] = []
    if cfg.data.eval_mc_path:
        frame = pd.read_parquet(
            cfg.data.eval_mc_path, columns=["item_id", "context", "choices", "label"]
        )
        if cfg.eval.mc_max_items is not None:
            frame = frame.head(cfg.eval.mc_max_items)
        items = [
            {
                "item_id": int(r.item_id),
                "context": [int(t) for t in r.context],
                "choices": [[int(t) for t in c] for c in r.choices],
                "label": int(r.label),
            }
            for r in frame.itertuples(index=False)
        ]
    return EvalData(val=val, mc_items=items)


def eval_due(step: int, sched: TrainSchedule, cfg: EvalConfig) -> bool:
    """Whether to evaluate once optimizer step ``step`` (0-based) is done.

    Always after the last step; every ``every_steps`` steps; and whenever the samples seen cross a
    multiple of ``every_epochs`` epochs (the first step whose batch reaches the boundary).
    """
    done = step + 1
    if done == sched.total_steps:
        return True
    if cfg.every_steps is not None and done % cfg.every_steps == 0:
        return True
    before = sched.samples_after(step - 1) if step > 0 else 0
    after = sched.samples_after(step)
    # 1e-9 keeps exact boundaries (e.g. 3 * (1/3 epoch)) from rounding down.
    if any(before < e * sched.n_windows - 1e-9 <= after for e in cfg.at_epochs):
        return True
    if cfg.every_epochs is not None:
        per_eval = cfg.every_epochs * sched.n_windows  # samples between evals
        return math.floor(after / per_eval + 1e-9) > math.floor(before / per_eval + 1e-9)
    return False


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    cfg: RunConfig,
    causal: bool,
    data: EvalData,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float | int | None]:
    """One evaluation: ``val_loss, val_loss_se, mc_acc, mc_margin, mc_n`` (None where no data).

    ``autocast`` makes the context the trainer trains under (bf16 on CUDA), so evals match it.
    """
    was_training = model.training
    model.eval()
    out: dict[str, float | int | None] = {
        "val_loss": None,
        "val_loss_se": None,
        "mc_acc": None,
        "mc_margin": None,
        "mc_n": 0,
    }
    gen = torch.Generator(device=device)
    try:
        with autocast():
            if data.val is not None:
                out["val_loss"], out["val_loss_se"] = _val_loss(
                    model, cfg, causal, data.val, device, gen
                )
            if data.mc_items:
                gen.manual_seed(derived_seed(cfg.seed, _MC_NOISE))
                mc = mc_accuracy(
                    model,
                    data.mc_items,
                    objective_kind="ar" if causal else "dlm",
                    mask_id=cfg.mask_id,
                    n_samples=cfg.eval.mc_samples,
                    gen=gen,
                )
                out["mc_acc"], out["mc_margin"], out["mc_n"] = mc["acc"], mc["margin"], mc["n"]
    finally:
        model.train(was_training)
    return out


def _val_loss(
    model: torch.nn.Module,
    cfg: RunConfig,
    causal: bool,
    val: torch.Tensor,
    device: torch.device,
    gen: torch.Generator,
) -> tuple[float, float]:
    gen.manual_seed(derived_seed(cfg.seed, _VAL_NOISE))
    tokens = val.to(device)
    if causal:
        mean, se = ar_nll(model, tokens, batch_size=cfg.eval.val_batch_size)
    else:
        mean, se = dlm_elbo(
            model,
            tokens,
            cfg.mask_id,
            cfg.eval.elbo_samples,
            gen,
            eps=cfg.objective.eps,
            batch_size=cfg.eval.val_batch_size,
        )
    return float(mean), float(se)
