"""Data-constrained scaling law of Muennighoff et al. (2023), as pure functions of named parameters.

    L(N, D, U) = E + A / N'^alpha + B / D'^beta
    D' = U + U * R_D* * (1 - exp(-R_D / R_D*)),        R_D = max(D / U - 1, 0)
    N' = U_N + U_N * R_N* * (1 - exp(-R_N / R_N*)),    R_N = max(N / U_N - 1, 0)
    U_N = min(N, N_opt(U))   (compute-optimal size for U tokens under the fitted Chinchilla law)

N = parameters, D = training tokens seen, U = unique tokens. With R_D* = R_N* = inf the law is
Chinchilla's E + A / N^alpha + B / D^beta (repeated tokens worth as much as fresh ones).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp


@dataclass(frozen=True)
class LawParams:
    """Named parameters of the law. ``A = 0`` means a fit from a single model size: the
    parameter term is then a constant folded into ``E`` and ``rn_star`` is not identifiable."""

    A: float
    B: float
    E: float
    alpha: float
    beta: float
    rd_star: float = math.inf  # repetitions after which repeated data's value has decayed by 1/e
    rn_star: float = math.inf  # same for excess parameters beyond N_opt(U)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def with_(self, **changes: float) -> LawParams:
        return replace(self, **changes)


# Muennighoff et al. (2023), "Scaling Data-Constrained Language Models", fitted constants.
MUENNIGHOFF_2023 = LawParams(
    A=520.8, B=1487.7, E=1.869, alpha=0.3527, beta=0.3527, rd_star=15.39, rn_star=5.31
)


def chinchilla_loss(n_params: ArrayLike, tokens: ArrayLike, p: LawParams) -> NDArray[np.float64]:
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    return p.E + p.A / n**p.alpha + p.B / d**p.beta


def compute_optimal_params(unique_tokens: ArrayLike, p: LawParams) -> NDArray[np.float64]:
    """N_opt(U): the size Chinchilla's allocation pairs with D = U training tokens.

    Minimising E + A/N^a + B/D^b at C = 6ND gives N_opt = G (C/6)^(b/(a+b)) and
    D_opt = (C/6)^(a/(a+b)) / G with G = (a A / (b B))^(1/(a+b)); setting D_opt = U:
    N_opt = G (G U)^(b/a). With a = b this is (A/B)^(1/a) U (about U/20 for Muennighoff's fit).
    """
    u = np.asarray(unique_tokens, dtype=float)
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1.0 / (p.alpha + p.beta))
    return g * (g * u) ** (p.beta / p.alpha)


def _decayed_repeats(repeats: NDArray[np.float64], r_star: float) -> NDArray[np.float64]:
    # R* (1 - exp(-R / R*)), written with expm1 so large R* stays exact; R* = inf -> R.
    if math.isinf(r_star):
        return repeats
    return -r_star * np.expm1(-repeats / r_star)


def effective_data(
    tokens: ArrayLike, unique_tokens: ArrayLike, rd_star: float
) -> NDArray[np.float64]:
    d = np.asarray(tokens, dtype=float)
    u = np.asarray(unique_tokens, dtype=float)
    # Within the first epoch every token is fresh: D' = D (R_D = 0 and D < U).
    repeats = np.maximum(d / u - 1.0, 0.0)
    return np.minimum(d, u) + u * _decayed_repeats(repeats, rd_star)


def effective_params(
    n_params: ArrayLike, unique_tokens: ArrayLike, p: LawParams
) -> NDArray[np.float64]:
    n = np.asarray(n_params, dtype=float)
    u_n = np.minimum(n, compute_optimal_params(unique_tokens, p))
    repeats = np.maximum(n / u_n - 1.0, 0.0)
    return u_n + u_n * _decayed_repeats(repeats, p.rn_star)


def log_terms(
    n_params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike, p: LawParams
) -> NDArray[np.float64]:
    """The three log-terms (log A - alpha log N', log B - beta log D', log E), shape (3, n)."""
    d_eff = effective_data(tokens, unique_tokens, p.rd_star)
    if p.A > 0:
        n_eff = effective_params(n_params, unique_tokens, p)
        t_n = math.log(p.A) - p.alpha * np.log(n_eff)
    else:
        t_n = np.full(d_eff.shape, -np.inf)
    t_d = math.log(p.B) - p.beta * np.log(d_eff)
    t_e = np.full(d_eff.shape, math.log(p.E))
    return np.stack(np.broadcast_arrays(t_n, t_d, t_e))


def data_constrained_loss(
    n_params: ArrayLike, tokens: ArrayLike, unique_tokens: ArrayLike, p: LawParams
) -> NDArray[np.float64]:
    """L(N, D, U); evaluated as exp(logsumexp(terms)), the form the fit minimises."""
    return np.exp(logsumexp(log_terms(n_params, tokens, unique_tokens, p), axis=0))
