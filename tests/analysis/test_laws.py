"""The data-constrained law against Muennighoff et al. (2023)'s constants and its own algebra."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from analysis.laws import (
    MUENNIGHOFF_2023,
    LawParams,
    chinchilla_loss,
    compute_optimal_params,
    data_constrained_loss,
    effective_data,
    effective_params,
)

P = MUENNIGHOFF_2023


def test_published_constants_are_named_and_frozen() -> None:
    assert (P.A, P.B, P.E, P.alpha, P.beta) == (520.8, 1487.7, 1.869, 0.3527, 0.3527)
    assert (P.rd_star, P.rn_star) == (15.39, 5.31)
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.A = 1.0  # type: ignore[misc]


def test_value_matches_the_formula_written_out_by_hand() -> None:
    # N = 1e9 parameters, U = 1e10 unique tokens, D = 4e11 tokens (40 epochs).
    n, u, d = 1e9, 1e10, 4e11
    n_opt = (P.A / P.B) ** (1 / P.alpha) * u  # alpha = beta: N_opt = (A/B)^(1/alpha) U
    u_n = min(n, n_opt)
    r_n = n / u_n - 1
    n_eff = u_n + u_n * P.rn_star * (1 - math.exp(-r_n / P.rn_star))
    r_d = d / u - 1
    d_eff = u + u * P.rd_star * (1 - math.exp(-r_d / P.rd_star))
    expected = P.E + P.A / n_eff**P.alpha + P.B / d_eff**P.beta
    assert data_constrained_loss(n, d, u, P) == pytest.approx(expected, rel=1e-12)
    # Published behaviour: about 20 tokens per parameter is compute-optimal under this fit.
    assert u / compute_optimal_params(u, P) == pytest.approx(19.6, abs=0.5)
    # By hand: N_opt = 5.10e8 -> N' = 5.10e8 (1 + 5.31 (1 - e^-0.180)) = 9.58e8, A/N'^a = 0.354;
    # D' = 1e10 (1 + 15.39 (1 - e^-2.534)) = 1.517e11, B/D'^b = 0.169; L = 1.869 + 0.523.
    assert expected == pytest.approx(2.392, abs=1e-3)


def test_four_epochs_are_almost_as_good_as_fresh_data() -> None:
    # The paper's headline: up to ~4 epochs, repeated tokens are worth nearly as much as new.
    u = 1e10
    d_eff = effective_data(4 * u, u, P.rd_star)
    assert 0.92 < d_eff / (4 * u) < 0.94
    n = float(compute_optimal_params(u, P))  # no excess parameters: only D' differs
    repeated = data_constrained_loss(n, 4 * u, u, P)
    fresh = data_constrained_loss(n, 4 * u, 4 * u, P)
    assert 0 < (repeated - fresh) / fresh < 0.005


def test_value_of_a_repeated_token_decays_by_e_at_rd_star() -> None:
    u, r = 1e9, P.rd_star
    d = (1 + r) * u
    h = 1e-4 * u
    slope = (effective_data(d + h, u, P.rd_star) - effective_data(d - h, u, P.rd_star)) / (2 * h)
    assert slope == pytest.approx(math.exp(-1), rel=1e-5)
    # Saturation: infinitely many epochs are worth U (1 + R_D*) tokens.
    assert effective_data(1e9 * u, u, P.rd_star) == pytest.approx(u * (1 + P.rd_star))


def test_no_decay_recovers_chinchilla() -> None:
    chin = LawParams(A=P.A, B=P.B, E=P.E, alpha=P.alpha, beta=P.beta)
    n, d, u = np.array([1e8, 1e9, 1e10]), np.array([1e10, 5e10, 3e11]), 1e10
    assert np.allclose(data_constrained_loss(n, d, u, chin), chinchilla_loss(n, d, chin))
    # Below N_opt(U) extra parameters are never discounted, whatever R_N*.
    small = np.array([1e7, 1e8])
    assert np.allclose(effective_params(small, u, P), small)


def test_a_zero_drops_the_parameter_term() -> None:
    p = P.with_(A=0.0)
    assert data_constrained_loss(1e9, 1e10, 1e10, p) == pytest.approx(P.E + P.B / 1e10**P.beta)
