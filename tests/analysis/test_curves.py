"""Smooth metric-vs-epoch curves."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.curves import fit_smooth_curve
from analysis.errors import AnalysisError


def test_smooth_curve_follows_a_known_function() -> None:
    epochs = np.array([1, 2, 4, 8, 16, 32, 64.0])
    truth = 3.0 + 0.05 * np.log(epochs) ** 2 - 0.2 * np.log(epochs)
    curve = fit_smooth_curve(np.repeat(epochs, 2), np.repeat(truth, 2))  # duplicates averaged
    assert curve.kind == "spline" and curve.epoch_range == (1.0, 64.0)
    grid = np.geomspace(1, 64, 50)
    expected = 3.0 + 0.05 * np.log(grid) ** 2 - 0.2 * np.log(grid)
    assert np.max(np.abs(curve(grid) - expected)) < 0.01
    # Columns share the penalty and come back side by side: (grid, B).
    both = fit_smooth_curve(epochs, np.stack([truth, truth + 1], axis=1), lam=curve.lam)
    assert both(grid).shape == (50, 2)
    assert np.allclose(both(grid)[:, 1] - both(grid)[:, 0], 1.0)


def test_smooth_curve_few_points() -> None:
    lin = fit_smooth_curve(np.array([1.0, 4.0]), np.array([3.0, 2.0]))
    assert lin.kind == "linear" and lin(2.0) == pytest.approx(2.5)  # halfway in log-epoch
    with pytest.raises(AnalysisError, match=">= 2 distinct epochs"):
        fit_smooth_curve(np.array([1.0, 1.0]), np.array([3.0, np.nan]))
