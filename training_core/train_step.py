"""One optimizer step on the batch and noise of step s, the unit the main run and branches share.

The batch of step s is ``run.sched.windows(s)`` and the objective's noise generator is seeded from
(seed, s), so a step is a function of s and the model/optimizer state alone: a branch step and a
resumed step take exactly the step an uninterrupted run would. A non-finite loss or gradient norm
skips the update (the schedule still moves on) and is counted by the caller against
``max_nonfinite``.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch
from torch.optim.lr_scheduler import LRScheduler

from training_core import data_parallel
from training_core.data import derived_seed
from training_core.run_state import Run

_TRAIN_NOISE = 1  # stream tag for derived_seed; evaluation uses its own tags


class NonFiniteLoss(RuntimeError):
    """The loss or gradient norm went non-finite more often than ``max_nonfinite`` allows."""


class StepStats(NamedTuple):
    """What one optimizer step measured: the global batch's mean loss, the gradient norm before
    clipping, the tokens trained on and the seconds it took."""

    loss: float
    grad_norm: float
    tokens: int
    seconds: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


def optimizer_step(run: Run, step: int, scheduler: LRScheduler) -> StepStats:
    """Train on the batch and noise of ``step`` at the rate ``scheduler`` stands at, over
    ``grad_accum`` micro-batches, then step the scheduler (a skipped update still moves the
    schedule on); a non-finite loss or gradient skips the update."""
    cfg = run.cfg
    t0 = time.perf_counter()
    tokens = run.train.get(run.sched.windows(step))  # (B, seq_len), B = batch (last may be short)
    if run.device.type == "cuda":
        tokens = tokens.pin_memory()  # lets the copies below overlap with compute
    gen = torch.Generator(device=run.device)
    # Objective noise: a function of (seed, step) only; every rank draws it for the whole batch.
    gen.manual_seed(derived_seed(cfg.seed, _TRAIN_NOISE, step))
    loss_sum = torch.zeros((), device=run.device)
    for micro in torch.tensor_split(tokens, cfg.optim.grad_accum):
        if len(micro) == 0:
            continue
        # This rank's rows; weight makes the (rank-averaged) gradient the mean over the step.
        rows, weight = run.par.local_rows(len(micro), len(tokens))
        with run.autocast():
            loss, _stats = run.objective.loss(
                run.model, micro.to(run.device, non_blocking=True), gen, rows
            )
        (loss * weight).backward()
        loss_sum += loss.detach() * weight
    grad_norm = _clip(run)
    train_loss = float(run.par.sum(loss_sum)) / run.par.world  # the global batch's mean loss
    if math.isfinite(train_loss) and math.isfinite(grad_norm):
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return StepStats(train_loss, grad_norm, tokens.numel(), time.perf_counter() - t0)


def check_nonfinite(count: int, allowed: int, stats: StepStats, step: int) -> None:
    """Raise ``NonFiniteLoss`` once ``count`` non-finite steps exceed the ``allowed`` ones."""
    if count > allowed:
        raise NonFiniteLoss(
            f"non-finite train loss {stats.loss} / grad norm {stats.grad_norm} at step {step + 1}"
        )


def _clip(run: Run) -> float:
    """Clip the gradients to ``optim.grad_clip`` (None: no clip); returns the full norm before."""
    params = [q for q in run.model.parameters() if q.grad is not None]
    clip = run.cfg.optim.grad_clip
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
    return data_parallel.full_norm(norm)
