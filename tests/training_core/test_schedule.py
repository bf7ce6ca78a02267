"""LR schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from training_core.config import OptimConfig
from training_core.schedule import (
    cooldown_lr,
    cooldown_scheduler,
    lr_at,
    main_scheduler,
    warmup_steps,
)


def test_warmup_fraction_and_steps() -> None:
    assert warmup_steps(100, OptimConfig(warmup=0.1)) == 10
    assert warmup_steps(100, OptimConfig(warmup=7)) == 7
    assert warmup_steps(5, OptimConfig(warmup=7)) == 5  # never longer than the run


def test_cosine_ramps_peaks_and_ends_at_floor() -> None:
    cfg = OptimConfig(lr=1.0, warmup=4, min_lr_ratio=0.1, schedule="cosine")
    total = 24
    assert [lr_at(s, total, cfg) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(total - 1, total, cfg) == pytest.approx(0.1)
    # Halfway through the cosine: floor + (peak - floor) / 2.
    mid = 4 + (total - 1 - 4) / 2
    assert lr_at(int(mid), total, cfg) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (int(mid) - 4) / (total - 5)))
    )
    lrs = [lr_at(s, total, cfg) for s in range(3, total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_wsd_is_flat_then_decays_linearly() -> None:
    cfg = OptimConfig(lr=2.0, warmup=2, min_lr_ratio=0.0, schedule="wsd", decay_frac=0.25)
    total = 20  # decay over the last 5 steps: 15..19
    assert [lr_at(s, total, cfg) for s in range(2, 15)] == pytest.approx([2.0] * 13)
    assert [lr_at(s, total, cfg) for s in range(15, 20)] == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])


def test_step_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="step"):
        lr_at(10, 10, OptimConfig())


def _optimizer(lr: float) -> torch.optim.AdamW:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    return torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:]}], lr=lr)


def _rates(scheduler: LambdaLR, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        assert len(set(scheduler.get_last_lr())) == 1  # every group follows the same schedule
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_lambda_lr_applies_the_pure_schedule_and_rebuilds_at_any_step(kind: str) -> None:
    cfg = OptimConfig(lr=3e-3, warmup=3, min_lr_ratio=0.1, schedule=kind, decay_frac=0.25)
    total = 20
    rates = _rates(main_scheduler(_optimizer(cfg.lr), total, cfg), total)
    assert rates == pytest.approx([lr_at(s, total, cfg) for s in range(total)], rel=1e-15)
    # Resume: a scheduler rebuilt at step 7 (on an optimizer whose group rate is stale, as a
    # checkpoint's would be) continues exactly as the uninterrupted one.
    stale = _optimizer(123.0)
    assert _rates(main_scheduler(stale, total, cfg, start_step=7), total - 7) == rates[7:]


def test_cooldown_scheduler_decays_as_cooldown_lr() -> None:
    peak, start, floor = 1e-2, 8e-3, 1e-3
    for shape in ("linear", "1-sqrt"):
        rates = _rates(cooldown_scheduler(_optimizer(peak), peak, 5, start, floor, shape), 5)
        expected = [cooldown_lr(k, 5, start, floor, shape) for k in range(5)]
        assert rates == pytest.approx(expected, rel=1e-15)
        assert rates[-1] == pytest.approx(floor, rel=1e-15)
