"""Learning-rate schedules as pure functions of the step: warmup+cosine and warmup-stable-decay.

Being pure in (step, total_steps, cfg) is what makes resume exact: nothing to checkpoint.
"""

from __future__ import annotations

import math

from training_core.config import OptimConfig


def warmup_steps(total_steps: int, cfg: OptimConfig) -> int:
    """A warmup < 1 is a fraction of the run, >= 1 a step count; never longer than the run."""
    steps = cfg.warmup * total_steps if cfg.warmup < 1 else cfg.warmup
    return min(int(round(steps)), total_steps)


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
    decay = max(int(round(cfg.decay_frac * total_steps)), 1)
    decay_start = max(total_steps - decay, warm)
    if step < decay_start:
        return peak
    span = max(total_steps - 1 - decay_start, 1)
    progress = min((step - decay_start) / span, 1.0)
    return peak + (floor - peak) * progress
