"""C_crit on the compute-optimal frontier (Prabhudesai et al. 2025's definition), from fitted laws.

For one objective with data-constrained law L(N, D, U) (``analysis.laws``) whose training costs
C = k N D FLOPs, the compute-optimal loss with U unique tokens at compute C is

    L*(C, U) = min over epochs E = D / U of  L(N = C / (k E U), D = E U, U)

the best split of C into model size and (repeated) tokens. The frontier critical compute C_crit(U)
is the compute beyond which L*_DLM(C, U) < L*_AR(C, U) for good. Compute is per objective:
k is the objective's FLOPs per token per parameter (6 is the "6ND" convention; a study passes
the median of its runs' ``flops_per_token / n_params``, as ``training_core.flops`` counts them:
causal attention at half cost, so k_AR < k_DLM and the DLM pays for its extra FLOPs here).
C_crit needs every parameter of both laws: with fewer than 3 model sizes stage 1 (A, alpha, E,
B, beta) is not identified (``analysis.fits.stage1_gate``), and the answer is "not identified".

Pure functions (the entry points for a planner; laws are ``LawParams``, compute in FLOPs):

- ``compute_optimal(law, unique_tokens, compute, *, flops_per_param=6.0)`` -> ``ComputeOptimal``:
  for each compute C (array), the optimal loss, model size N, tokens D, epochs D/U, and whether
  the optimum sits on the edge of the searched epochs (``EPOCH_GRID``, 1e-3 to 1e5 epochs).
- ``frontier_crossover(ar, dlm, unique_tokens, *, flops_per_param=(6.0, 6.0),
  compute_range=None)`` -> ``FrontierCrossover``: status ('crossover' / 'no_crossover' /
  'dlm_ahead_throughout'), C_crit and each objective's optimum (N, epochs) there.

A fitted law (``analysis.fits.LawFit``) is only fit for these when every parameter is pinned:
check ``analysis.frontier_table.frontier_gate(ar_fit, dlm_fit)`` (None, or 'not identified:
<why>') first. The study's per-budget table with intervals and P(crossover) is
``analysis.frontier_table``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from analysis.errors import AnalysisError
from analysis.laws import LawParams, data_constrained_loss

EPOCH_GRID = np.geomspace(1e-3, 1e5, 257)  # searched epochs D/U, 1/32 decade apart
COMPUTE_RANGE_U2 = (1e-4, 1e8)  # default searched compute, in units of k U^2 FLOPs
N_COMPUTE = 73  # compute grid points (1/6 decade apart by default) before Brent refines the root


@dataclass(frozen=True)
class ComputeOptimal:
    """The compute-optimal allocation of one objective, arrays over the requested compute."""

    compute: NDArray[np.float64]
    loss: NDArray[np.float64]
    n_params: NDArray[np.float64]
    tokens: NDArray[np.float64]
    epochs: NDArray[np.float64]
    at_bound: NDArray[np.bool_]  # the optimum lies on the edge of the searched epochs


@dataclass(frozen=True)
class FrontierCrossover:
    """Where DLM's compute-optimal loss drops below AR's for good, at one budget."""

    status: str
    compute: float = math.nan
    loss: float = math.nan
    n_params_ar: float = math.nan
    epochs_ar: float = math.nan
    n_params_dlm: float = math.nan
    epochs_dlm: float = math.nan
    at_bound: bool = False


def _finite(p: LawParams) -> LawParams:
    return p.with_(rn_star=math.inf) if math.isnan(p.rn_star) else p


def _check_k(k: float) -> float:
    if not (isinstance(k, int | float) and math.isfinite(k) and k > 0):
        raise AnalysisError(f"flops_per_param: must be a positive number, got {k!r}")
    return float(k)


def compute_optimal(
    law: LawParams,
    unique_tokens: float,
    compute: ArrayLike,
    *,
    flops_per_param: float = 6.0,
    epochs_grid: NDArray[np.float64] = EPOCH_GRID,
) -> ComputeOptimal:
    """min over epochs (log grid, then the parabola through the best point and its neighbours)
    of L(C / (k E U), E U, U) at each compute C. ``epochs_grid`` must be log-uniform."""
    k = _check_k(flops_per_param)
    u = float(unique_tokens)
    if not u > 0:
        raise AnalysisError(f"unique_tokens: must be positive, got {unique_tokens!r}")
    c = np.atleast_1d(np.asarray(compute, float))
    law = _finite(law)
    x = np.log(epochs_grid)
    loss = data_constrained_loss(
        c[:, None] / (k * epochs_grid[None, :] * u), epochs_grid * u, u, law
    )
    best = np.argmin(loss, axis=1)
    rows = np.arange(len(c))
    mid = np.clip(best, 1, len(x) - 2)
    y0, y1, y2 = loss[rows, mid - 1], loss[rows, mid], loss[rows, mid + 1]
    h = x[1] - x[0]
    curv = y0 - 2.0 * y1 + y2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curv > 0, 0.5 * h * (y0 - y2) / curv, 0.0)
    at_bound = (best == 0) | (best == len(x) - 1)
    x_opt = np.where(at_bound, x[best], x[mid] + np.clip(shift, -h, h))
    e_opt = np.exp(x_opt)
    l_opt = data_constrained_loss(c / (k * e_opt * u), e_opt * u, u, law)
    grid_best = loss[rows, best]
    worse = ~(l_opt <= grid_best)  # the parabola's vertex is no better: keep the grid point
    e_opt = np.where(worse, epochs_grid[best], e_opt)
    l_opt = np.where(worse, grid_best, l_opt)
    return ComputeOptimal(c, l_opt, c / (k * e_opt * u), e_opt * u, e_opt, at_bound)


def default_compute_range(unique_tokens: float, flops_per_param: float) -> tuple[float, float]:
    """Searched compute: ``COMPUTE_RANGE_U2`` times k U^2 (one epoch at N = U costs k U^2)."""
    scale = flops_per_param * float(unique_tokens) ** 2
    return COMPUTE_RANGE_U2[0] * scale, COMPUTE_RANGE_U2[1] * scale


def frontier_crossover(
    ar: LawParams,
    dlm: LawParams,
    unique_tokens: float,
    *,
    flops_per_param: tuple[float, float] = (6.0, 6.0),
    compute_range: tuple[float, float] | None = None,
    n_grid: int = N_COMPUTE,
) -> FrontierCrossover:
    """C_crit(U): the last sign change of L*_DLM - L*_AR on a log grid of compute, refined by
    Brent's method. ``flops_per_param`` = (k_AR, k_DLM)."""
    k_ar, k_dlm = (_check_k(k) for k in flops_per_param)
    lo, hi = compute_range or default_compute_range(unique_tokens, max(k_ar, k_dlm))

    def gap(c: ArrayLike) -> NDArray[np.float64]:
        l_dlm = compute_optimal(dlm, unique_tokens, c, flops_per_param=k_dlm).loss
        return l_dlm - compute_optimal(ar, unique_tokens, c, flops_per_param=k_ar).loss

    grid = np.geomspace(lo, hi, n_grid)
    diff = gap(grid)
    if np.all(diff < 0):
        return FrontierCrossover("dlm_ahead_throughout")
    if diff[-1] >= 0:
        return FrontierCrossover("no_crossover")
    i = int(np.nonzero(diff >= 0)[0][-1])  # last compute where AR is at least as good
    if diff[i] == 0:
        log_c = math.log(grid[i])
    else:
        log_c = brentq(
            lambda t: float(gap(math.exp(t))[0]),
            math.log(grid[i]),
            math.log(grid[i + 1]),
            xtol=1e-9,
        )
    c = math.exp(log_c)
    opt_ar = compute_optimal(ar, unique_tokens, c, flops_per_param=k_ar)
    opt_dlm = compute_optimal(dlm, unique_tokens, c, flops_per_param=k_dlm)
    return FrontierCrossover(
        "crossover",
        c,
        float(opt_dlm.loss[0]),
        float(opt_ar.n_params[0]),
        float(opt_ar.epochs[0]),
        float(opt_dlm.n_params[0]),
        float(opt_dlm.epochs[0]),
        bool(opt_ar.at_bound[0] or opt_dlm.at_bound[0]),
    )
