"""C_crit on the compute-optimal frontier: the pure solvers against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.errors import AnalysisError
from analysis.frontier import compute_optimal, frontier_crossover
from analysis.laws import MUENNIGHOFF_2023, data_constrained_loss

AR = MUENNIGHOFF_2023
# DLM: 10% worse per token, repeated data keeps its value ~6x longer. Frontier crossover at
# 53 k U^2 FLOPs: AR's optimum there is N 0.47 U at 19 epochs, DLM's N 0.29 U at 30 epochs.
DLM = AR.with_(B=AR.B * 1.1, rd_star=100.0)


def _brute_force_min(law, u: float, c: float, k: float = 6.0) -> float:
    n = np.geomspace(1e3, 1e15, 400_001)
    return float(data_constrained_loss(n, c / (k * n), u, law).min())


def test_compute_optimal_matches_a_brute_force_search_over_model_size() -> None:
    u = 1e9
    compute = np.array([1e17, 1e19, 1e21, 1e23])
    for law in (AR, DLM):
        opt = compute_optimal(law, u, compute)
        brute = [_brute_force_min(law, u, c) for c in compute]
        np.testing.assert_allclose(opt.loss, brute, rtol=1e-7)
        np.testing.assert_allclose(opt.n_params * opt.tokens * 6.0, compute, rtol=1e-9)
        assert not opt.at_bound.any()
    with pytest.raises(AnalysisError, match="flops_per_param"):
        compute_optimal(AR, u, 1e20, flops_per_param=0.0)


def test_frontier_crossover_is_where_the_brute_force_ranking_flips() -> None:
    for u in (1e8, 1e9):
        x = frontier_crossover(AR, DLM, u)
        assert x.status == "crossover" and 40 < x.compute / u**2 < 70
        before, after = 0.98 * x.compute, 1.02 * x.compute
        assert _brute_force_min(AR, u, before) < _brute_force_min(DLM, u, before)
        assert _brute_force_min(DLM, u, after) < _brute_force_min(AR, u, after)
    # Per-objective compute: a DLM 10% dearer per token crosses later; the same law never does.
    x = frontier_crossover(AR, DLM, 1e9)
    assert frontier_crossover(AR, DLM, 1e9, flops_per_param=(6.0, 6.6)).compute > x.compute
    assert frontier_crossover(AR, AR, 1e9).status == "no_crossover"
    assert frontier_crossover(AR, AR.with_(E=1.0), 1e9).status == "dlm_ahead_throughout"
