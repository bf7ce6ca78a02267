"""Learning-rate schedules as pure functions of the step: warmup+cosine and warmup-stable-decay.

The trainer applies them through ``torch.optim.lr_scheduler.LambdaLR`` (``main_scheduler``,
``cooldown_scheduler``): the scheduler multiplies each group's base rate (the peak ``cfg.lr``) by
``lr_at(step) / peak``. Being pure in (step, total_steps, cfg) is what makes resume exact: the
scheduler's only state is its step counter, which the checkpoint already holds, so a resumed run
rebuilds the scheduler at its step instead of checkpointing it (``LambdaLR.state_dict`` cannot
save a closure anyway), and an evaluation branch rebuilds the main one when it is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

from training_core.config import OptimConfig


def warmup_steps(total_steps: int, cfg: OptimConfig) -> int:
    """A warmup < 1 is a fraction of the run, >= 1 a step count; never longer than the run."""
    steps = cfg.warmup * total_steps if cfg.warmup < 1 else cfg.warmup
    return min(int(round(steps)), total_steps)


def wsd_decay_start(total_steps: int, cfg: OptimConfig) -> int:
    """First step of a WSD run's final decay: the last ``decay_frac`` of all steps, after warmup."""
    decay = max(int(round(cfg.decay_frac * total_steps)), 1)
    return max(total_steps - decay, warmup_steps(total_steps, cfg))


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    Warmup ramps linearly to the peak reaching it at the end of warmup (step w-1 gets the peak,
    step 0 gets peak/w, never 0, so the first update is not wasted). After warmup:
    - cosine: peak -> peak*min_lr_ratio along half a cosine ending at the last step;
    - wsd: constant peak, then a linear decay to peak*min_lr_ratio over the last
      ``decay_frac`` of all steps.
    """
    if not 0 <= step < max(total_steps, 1):
        raise ValueError(f"step: {step} outside [0, {total_steps})")
    peak, floor = cfg.lr, cfg.lr * cfg.min_lr_ratio
    warm = warmup_steps(total_steps, cfg)
    if step < warm:
        return peak * (step + 1) / warm
    if cfg.schedule == "cosine":
        span = max(total_steps - 1 - warm, 1)
        progress = min((step - warm) / span, 1.0)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = wsd_decay_start(total_steps, cfg)
    if step < decay_start:
        return peak
    return cooldown_lr(step - decay_start, total_steps - decay_start, peak, floor, "linear")


def cooldown_lr(k: int, n: int, start: float, floor: float, shape: str = "linear") -> float:
    """Learning rate of step ``k`` (0-based) of an ``n``-step cooldown from ``start`` to ``floor``.

    Step 0 still takes ``start`` and step n-1 takes ``floor``: progress = k / (n - 1). ``linear``
    interpolates; ``1-sqrt`` (Hägele et al. 2024) is floor + (start - floor) * (1 - sqrt(progress)):
    it falls fast at first and spends most of the cooldown near the floor.
    """
    if not 0 <= k < max(n, 1):
        raise ValueError(f"k: cooldown step {k} outside [0, {n})")
    progress = min(k / max(n - 1, 1), 1.0)
    if shape == "linear":
        return start + (floor - start) * progress
    if shape == "1-sqrt":
        return floor + (start - floor) * (1.0 - math.sqrt(progress))
    raise ValueError(f"decay: unknown cooldown shape {shape!r}; choose 'linear' or '1-sqrt'")


def main_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig, start_step: int = 0
) -> LambdaLR:
    """The run's schedule from step ``start_step`` on: the optimizer's rate is ``lr_at(step)``
    until the scheduler is stepped after the optimizer (steps past the end keep the last rate)."""
    last = max(total_steps - 1, 0)
    return _scheduler(
        optimizer, cfg.lr, lambda s: lr_at(min(s, last), total_steps, cfg), start_step
    )


def cooldown_scheduler(
    optimizer: torch.optim.Optimizer, peak: float, n: int, start: float, floor: float, shape: str
) -> LambdaLR:
    """An evaluation branch's ``n``-step cooldown from ``start`` to ``floor`` (``cooldown_lr``)."""
    last = max(n - 1, 0)
    return _scheduler(optimizer, peak, lambda k: cooldown_lr(min(k, last), n, start, floor, shape))


def _scheduler(
    optimizer: torch.optim.Optimizer,
    peak: float,
    rate: Callable[[int], float],
    start_step: int = 0,
) -> LambdaLR:
    """``LambdaLR`` over the absolute rate function ``rate``: the base rate of every group is the
    peak (set here, so a checkpoint's stale group rate never becomes the base), the multiplier
    ``rate(step) / peak``. Built at ``start_step`` (``last_epoch = start_step - 1``: the
    constructor steps once), the optimizer's rate is ``rate(start_step)`` at once."""
    for group in optimizer.param_groups:
        group["initial_lr"] = peak
    return LambdaLR(optimizer, lambda step: rate(step) / peak, last_epoch=start_step - 1)
