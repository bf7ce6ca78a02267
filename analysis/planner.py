"""The planner: given U unique tokens and C FLOPs, train AR or a DLM, how large, how many epochs?

Pure functions over per-objective laws (``analysis.laws``). For one objective at (U, C) the
options are the model sizes N with D = C / (k N) training tokens (k = 6: the C = 6 N D
convention of Kaplan et al., Chinchilla, Muennighoff et al. and Prabhudesai et al., used for
both objectives; the study's own FLOP counter, ``training_core.flops``, charges causal attention
at half, a few % that this convention leaves out). The best option minimises the predicted loss

    L*(U, C) = min over N of L(N, D = C / (k N), U),    epochs = D / U

found on a log grid of epochs in [1e-3, 1e4] (N follows from C), refined by a parabola through the
best grid point and its neighbours. Intervals come from the law's draws (bootstrap refits of a
study, or draws from a stated prior): each draw gets its own optimum, and the difference of the
two objectives' optima is taken draw by draw (the fits of the two objectives are independent).
The answer is "too close to call" when that interval of the difference contains 0.

C_crit(U), the compute from which the DLM's best option beats AR's best, is the first sign
change of L*_DLM - L*_AR going up in C (brentq on the point laws, grid interpolation per draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import brentq

from analysis.laws import LawParams, compute_optimal_params, data_constrained_loss

FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D, for both objectives (see the module docstring)
EPOCH_RANGE = (1e-3, 1e4)
N_GRID = 161  # log-epoch grid points: ~4.4% steps over 7 decades, then a parabola refines
OBJECTIVES = ("ar", "dlm")
IDENTIFIED = "identified"
TOO_CLOSE = "too close to call"
NO_INTERVAL = "no verdict: the laws have no draws, so no interval"


@dataclass(frozen=True)
class ObjectiveLaw:
    """One objective's law as the planner needs it.

    ``status`` is IDENTIFIED or why not (then nothing is recommended); ``draws`` are parameter
    sets whose spread is the uncertainty (bootstrap refits or prior draws); ``cap_at_n_opt``
    limits N to N_opt(U) when R_N* is not identified (there excess parameters would be priced
    by a number the data cannot pin)."""

    objective: str
    status: str
    params: LawParams | None = None
    draws: tuple[LawParams, ...] = ()
    cap_at_n_opt: bool = False

    @property
    def identified(self) -> bool:
        return self.status == IDENTIFIED and self.params is not None


@dataclass(frozen=True)
class LawSet:
    """The laws a plan is made from, where they come from, and what the user must know."""

    laws: dict[str, ObjectiveLaw]
    source: str
    notes: tuple[str, ...] = ()

    def blocked(self) -> list[str]:
        """Why no recommendation can be made ('ar: not identified: ...'), empty when it can."""
        out = [f"{o}: no law (no runs of this objective)" for o in OBJECTIVES if o not in self.laws]
        return out + [f"{o}: {law.status}" for o, law in self.laws.items() if not law.identified]


@dataclass(frozen=True)
class Option:
    """The best run of one objective at (U, C), with its predicted loss and interval."""

    objective: str
    n_params: float
    tokens: float
    epochs: float
    loss: float
    loss_lo: float | None
    loss_hi: float | None


@dataclass(frozen=True)
class Plan:
    """The answer at one (U, C). ``verdict``: 'ar', 'dlm', TOO_CLOSE or 'not identified: ...'."""

    unique_tokens: float
    compute: float
    confidence: float
    source: str
    verdict: str
    options: dict[str, Option] = field(default_factory=dict)
    diff: float | None = None  # L*_DLM - L*_AR at the point laws (negative: DLM better)
    diff_lo: float | None = None
    diff_hi: float | None = None
    p_dlm_better: float | None = None  # share of draws in which the DLM's optimum is lower
    n_draws: int = 0
    notes: tuple[str, ...] = ()

    @property
    def recommended(self) -> Option | None:
        return self.options.get(self.verdict)


def _epoch_grid() -> NDArray[np.float64]:
    return np.geomspace(*EPOCH_RANGE, N_GRID)


def optimal_losses(
    p: LawParams,
    unique_tokens: NDArray[np.float64],
    compute: NDArray[np.float64],
    *,
    cap_at_n_opt: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(L*, epochs at the optimum) for each cell of ``unique_tokens``/``compute`` (same shape).

    The grid over log epochs (M,) meets the cells (K,) in one (K, M) evaluation; the parabola
    through the best point and its two neighbours (in log epochs) then places the optimum
    between grid points, and the law is evaluated there once more."""
    u = np.asarray(unique_tokens, float).ravel()
    c = np.asarray(compute, float).ravel()
    log_e = np.log(_epoch_grid())
    d = u[:, None] * np.exp(log_e)[None, :]  # (K, M) tokens
    n = c[:, None] / (FLOPS_PER_PARAM_TOKEN * d)
    loss = data_constrained_loss(n, d, u[:, None], _finite(p))
    if cap_at_n_opt:
        loss = np.where(n > compute_optimal_params(u, p)[:, None], np.inf, loss)
    i = np.clip(np.argmin(loss, axis=1), 1, len(log_e) - 2)
    rows = np.arange(len(u))
    v0, v1, v2 = loss[rows, i - 1], loss[rows, i], loss[rows, i + 1]
    curv = v0 - 2 * v1 + v2
    h = log_e[1] - log_e[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(np.isfinite(curv) & (curv > 0), 0.5 * h * (v0 - v2) / curv, 0.0)
    best_log_e = log_e[i] + np.clip(np.nan_to_num(step), -h, h)
    d_best = u * np.exp(best_log_e)
    n_best = c / (FLOPS_PER_PARAM_TOKEN * d_best)
    refined = data_constrained_loss(n_best, d_best, u, _finite(p))
    if cap_at_n_opt:
        refined = np.where(n_best > compute_optimal_params(u, p), np.inf, refined)
    grid_best = loss.min(axis=1)
    better = refined <= grid_best
    out_loss = np.where(better, refined, grid_best)
    out_e = np.where(better, np.exp(best_log_e), np.exp(log_e[np.argmin(loss, axis=1)]))
    shape = np.shape(unique_tokens)
    return out_loss.reshape(shape), out_e.reshape(shape)


def _finite(p: LawParams) -> LawParams:
    # A fit reports an R_N* it could not pin as NaN: excess parameters then count as fresh
    # (and the caller caps N at N_opt(U), where R_N* plays no part).
    return p.with_(rn_star=math.inf) if math.isnan(p.rn_star) else p


def best_option(law: ObjectiveLaw, unique_tokens: float, compute: float) -> tuple[float, float]:
    """(L*, epochs) of one objective's point law at one (U, C)."""
    loss, epochs = optimal_losses(
        law.params, np.array([unique_tokens]), np.array([compute]), cap_at_n_opt=law.cap_at_n_opt
    )
    return float(loss[0]), float(epochs[0])


def draw_optima(
    law: ObjectiveLaw, unique_tokens: NDArray[np.float64], compute: NDArray[np.float64]
) -> NDArray[np.float64]:
    """L* of every draw at every cell: shape (n_draws, *cells)."""
    return np.array(
        [
            optimal_losses(d, unique_tokens, compute, cap_at_n_opt=law.cap_at_n_opt)[0]
            for d in law.draws
        ]
    ).reshape((len(law.draws), *np.shape(unique_tokens)))


def _quantiles(x: NDArray[np.float64], confidence: float) -> tuple[float, float] | None:
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    q = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(x, [q, 100 - q])
    return float(lo), float(hi)


def verdict_of(diff_iv: tuple[float, float] | None) -> str:
    """'dlm' when the whole interval of L_DLM - L_AR is below 0, 'ar' when above, else too
    close to call (an interval that could not be computed is never a verdict)."""
    if diff_iv is None:
        return NO_INTERVAL
    lo, hi = diff_iv
    return "dlm" if hi < 0 else "ar" if lo > 0 else TOO_CLOSE


def make_plan(laws: LawSet, unique_tokens: float, compute: float, confidence: float) -> Plan:
    """The recommendation at (U, C): each objective's best N and epochs, its predicted loss and
    interval, and the verdict on the difference (or why there is none)."""
    base = {
        "unique_tokens": unique_tokens,
        "compute": compute,
        "confidence": confidence,
        "source": laws.source,
        "notes": laws.notes,
    }
    blocked = laws.blocked()
    if blocked:
        return Plan(verdict="not identified: " + "; ".join(blocked), **base)
    u, c = np.array([unique_tokens]), np.array([compute])
    options, draws = {}, {}
    for obj in OBJECTIVES:
        law = laws.laws[obj]
        loss, epochs = best_option(law, unique_tokens, compute)
        draws[obj] = draw_optima(law, u, c)[:, 0] if law.draws else np.array([])
        iv = _quantiles(draws[obj], confidence) or (None, None)
        tokens = epochs * unique_tokens
        n = compute / (FLOPS_PER_PARAM_TOKEN * tokens)
        options[obj] = Option(obj, n, tokens, epochs, loss, *iv)
    k = min(len(draws["ar"]), len(draws["dlm"]))
    delta = draws["dlm"][:k] - draws["ar"][:k]
    diff_iv = _quantiles(delta, confidence)
    ok = np.isfinite(delta)
    edge = [
        f"{o}: the best option lies at the edge of the searched epochs {EPOCH_RANGE}"
        for o, opt in options.items()
        if not EPOCH_RANGE[0] * 1.05 < opt.epochs < EPOCH_RANGE[1] / 1.05
    ]
    base["notes"] = (*laws.notes, *edge)
    return Plan(
        verdict=verdict_of(diff_iv),
        options=options,
        diff=options["dlm"].loss - options["ar"].loss,
        diff_lo=diff_iv[0] if diff_iv else None,
        diff_hi=diff_iv[1] if diff_iv else None,
        p_dlm_better=float(np.mean(delta[ok] < 0)) if ok.any() else None,
        n_draws=int(ok.sum()),
        **base,
    )


def _first_dlm_crossing(log_c: NDArray[np.float64], diff: NDArray[np.float64]) -> float:
    """log C where diff (L_DLM - L_AR) first turns negative going up in C, interpolated;
    -inf when the DLM is ahead at the grid's start, NaN when it never gets ahead."""
    neg = diff < 0
    if not neg.any():
        return math.nan
    j = int(np.argmax(neg))
    if j == 0:
        return -math.inf
    d0, d1 = diff[j - 1], diff[j]
    return float(log_c[j - 1] + (log_c[j] - log_c[j - 1]) * d0 / (d0 - d1))


def critical_compute_band(
    laws: LawSet,
    unique_tokens: NDArray[np.float64],
    c_range: tuple[float, float],
    *,
    confidence: float = 0.95,
    n_c: int = 41,
) -> pd.DataFrame:
    """C_crit(U) per budget: the point laws' root (brentq) and the band of the draws' roots.

    Columns: unique_tokens, c_crit (NaN: DLM never ahead within ``c_range``; 0: ahead at its
    start), c_lo, c_hi (quantiles over draws; a draw that never crosses counts as +inf, so an
    open band says so), p_cross (share of draws that cross within the range)."""
    u = np.asarray(unique_tokens, float)
    log_c = np.linspace(math.log(c_range[0]), math.log(c_range[1]), n_c)
    uu, cc = np.meshgrid(u, np.exp(log_c), indexing="ij")  # (n_u, n_c)
    ar, dlm = laws.laws["ar"], laws.laws["dlm"]
    point = (
        optimal_losses(dlm.params, uu, cc, cap_at_n_opt=dlm.cap_at_n_opt)[0]
        - optimal_losses(ar.params, uu, cc, cap_at_n_opt=ar.cap_at_n_opt)[0]
    )
    k = min(len(ar.draws), len(dlm.draws))
    per_draw = draw_optima(dlm, uu, cc)[:k] - draw_optima(ar, uu, cc)[:k] if k else None
    rows = []
    for i, budget in enumerate(u):
        crit = _first_dlm_crossing(log_c, point[i])
        if np.isfinite(crit):
            crit = _refine_root(ar, dlm, budget, log_c, crit)
        row = {"unique_tokens": budget, "c_crit": _exp_edge(crit)}
        row |= {"c_lo": math.nan, "c_hi": math.nan, "p_cross": math.nan}
        if per_draw is not None:
            roots = np.array([_first_dlm_crossing(log_c, per_draw[j, i]) for j in range(k)])
            crossed = ~np.isnan(roots)
            roots = np.where(crossed, roots, np.inf)
            q = 100 * (1 - confidence) / 2
            lo, hi = np.percentile(roots, [q, 100 - q], method="nearest")
            row |= {"c_lo": _exp_edge(lo), "c_hi": _exp_edge(hi), "p_cross": crossed.mean()}
        rows.append(row)
    return pd.DataFrame(rows)


def _exp_edge(log_c: float) -> float:
    return math.nan if math.isnan(log_c) else 0.0 if log_c == -math.inf else math.exp(log_c)


def _refine_root(
    ar: ObjectiveLaw, dlm: ObjectiveLaw, u: float, log_c: NDArray[np.float64], guess: float
) -> float:
    def diff(x: float) -> float:
        return best_option(dlm, u, math.exp(x))[0] - best_option(ar, u, math.exp(x))[0]

    j = int(np.searchsorted(log_c, guess))
    lo, hi = log_c[max(j - 1, 0)], log_c[min(j, len(log_c) - 1)]
    if lo < hi and diff(lo) > 0 > diff(hi):
        return float(brentq(diff, lo, hi, xtol=1e-6))
    return guess


def plan_grid(
    laws: LawSet,
    unique_tokens: NDArray[np.float64],
    compute: NDArray[np.float64],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The verdict over a grid of (U, C): one row per cell with L*_AR, L*_DLM, their difference,
    its interval and the verdict ('dlm', 'ar' or 'too close to call')."""
    uu, cc = np.meshgrid(
        np.asarray(unique_tokens, float), np.asarray(compute, float), indexing="ij"
    )
    ar, dlm = laws.laws["ar"], laws.laws["dlm"]
    l_ar = optimal_losses(ar.params, uu, cc, cap_at_n_opt=ar.cap_at_n_opt)[0]
    l_dlm = optimal_losses(dlm.params, uu, cc, cap_at_n_opt=dlm.cap_at_n_opt)[0]
    k = min(len(ar.draws), len(dlm.draws))
    frame = pd.DataFrame(
        {
            "unique_tokens": uu.ravel(),
            "compute": cc.ravel(),
            "loss_ar": l_ar.ravel(),
            "loss_dlm": l_dlm.ravel(),
            "diff": (l_dlm - l_ar).ravel(),
        }
    )
    if k:
        delta = (draw_optima(dlm, uu, cc)[:k] - draw_optima(ar, uu, cc)[:k]).reshape(k, -1)
        q = 100 * (1 - confidence) / 2
        frame["diff_lo"], frame["diff_hi"] = np.nanpercentile(delta, [q, 100 - q], axis=0)
        frame["verdict"] = [
            verdict_of((lo, hi)) for lo, hi in zip(frame["diff_lo"], frame["diff_hi"], strict=True)
        ]
    else:
        frame["diff_lo"] = frame["diff_hi"] = math.nan
        frame["verdict"] = verdict_of(None)
    return frame
