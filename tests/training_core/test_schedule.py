"""LR schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest

from training_core.config import OptimConfig
from training_core.schedule import lr_at, warmup_steps


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
