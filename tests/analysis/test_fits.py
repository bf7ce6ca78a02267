"""Law fits recover known parameters; smooth curves and bad input behave."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits import fit_data_constrained_law, huber
from analysis.laws import MUENNIGHOFF_2023
from analysis.synthetic import law_points

TRUTH = MUENNIGHOFF_2023


def test_law_recovered_within_bootstrap_interval() -> None:
    # Three sizes x three budgets x four epoch settings, 0.2% log-normal noise, fixed seed.
    points = law_points(
        TRUTH, (1e7, 3e7, 1e8), (1e9, 3e9, 1e10), (1, 4, 16, 64), noise=0.002, seed=2
    )
    fit = fit_data_constrained_law(points, "ar", n_boot=40, seed=0)
    for name, true in TRUTH.as_dict().items():
        lo, hi = fit.intervals[name]
        assert lo <= true <= hi, f"{name}: {true} outside [{lo}, {hi}]"
    assert fit.params.E == pytest.approx(TRUTH.E, rel=0.02)
    assert fit.params.alpha == pytest.approx(TRUTH.alpha, rel=0.05)
    assert fit.params.beta == pytest.approx(TRUTH.beta, rel=0.05)
    assert fit.params.rd_star == pytest.approx(TRUTH.rd_star, rel=0.1)
    assert fit.r2 > 0.99 and fit.n_points == len(points) and not fit.notes
    assert len(fit.bootstrap) >= 35  # resamples that could be fitted
    pred = fit.predict(points)
    assert np.median(np.abs(pred / points["loss"] - 1)) < 0.005


def test_single_model_size_folds_parameter_term_and_says_so() -> None:
    points = law_points(TRUTH, (1e8,), (1e9, 1e10), (1, 4, 16), noise=0.001, seed=0)
    fit = fit_data_constrained_law(points, "dlm", n_boot=5)
    assert fit.params.A == 0 and math.isnan(fit.params.rn_star)
    assert "one model size" in fit.notes[0]
    assert fit.r2 > 0.95


def test_too_few_points_names_objective_and_what_is_missing() -> None:
    points = law_points(TRUTH, (1e8,), (1e9,), (4,), evals_per_run=3, seed=0)
    points = points[points["tokens"] > points["unique_tokens"]]  # no single-epoch points left
    with pytest.raises(AnalysisError, match=r"'dlm': 1 points, need at least 6 for a joint"):
        fit_data_constrained_law(points, "dlm", n_boot=0)
    with pytest.raises(AnalysisError, match="lack columns"):
        fit_data_constrained_law(pd.DataFrame({"loss": [1.0]}), "ar")


def test_huber_is_quadratic_then_linear() -> None:
    r = np.array([0.0, 5e-4, -2e-3])
    assert np.allclose(huber(r), [0.0, 0.5 * 5e-4**2, 1e-3 * (2e-3 - 5e-4)])


def test_no_single_epoch_points_falls_back_to_a_joint_fit() -> None:
    points = law_points(TRUTH, (1e7,), (1e9, 3e9), (2, 4, 8, 16, 32), noise=0.001, seed=0)
    points = points[points["tokens"] > points["unique_tokens"]]
    fit = fit_data_constrained_law(points, "ar", n_boot=5)
    assert fit.n_stage1_points == 0 and "joint fit" in fit.notes[0]
    assert fit.r2 > 0.99
    assert fit.params.rd_star == pytest.approx(TRUTH.rd_star, rel=0.3)
