"""Fitting the data-constrained law per objective (``analysis.laws``), with bootstrap intervals.

Law fit, as in Hoffmann et al. / Muennighoff et al.: minimise the sum over points of
Huber_delta(log L_pred - log L_obs), delta = 1e-3, with log L_pred = logsumexp of the three
log-terms (a - alpha log N', b - beta log D', e); A = e^a, B = e^b, E = e^e. L-BFGS-B starts from
the best points of a grid. Stage 1 fits (a, b, e, alpha, beta) on single-epoch points, where
N' = N and D' = D; stage 2 fits R_D*, R_N* on all points with stage 1 frozen. A study that
never evaluated inside the first epoch gets one joint fit of all parameters instead (noted).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import minimize

from analysis.errors import AnalysisError
from analysis.laws import LawParams, compute_optimal_params, data_constrained_loss, log_terms

HUBER_DELTA = 1e-3
_LBFGS = {"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9}
# Stage-1 search space (a = log A, b = log B, e = log E), as in the Chinchilla replications.
_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5),
    "alpha": (0.0, 0.25, 0.5, 1.0, 1.5),
    "beta": (0.0, 0.25, 0.5, 1.0, 1.5),
}
_BOUNDS = {"a": (-10, 60), "b": (-10, 60), "e": (-5, 5), "alpha": (1e-4, 3), "beta": (1e-4, 3)}
_R_STAR_GRID = (0.5, 2.0, 5.0, 15.0, 50.0, 200.0, 1000.0, 5000.0)
_LOG_R_BOUNDS = (math.log(0.05), math.log(1e5))
LAW_COLUMNS = ("n_params", "tokens", "unique_tokens", "loss")


def huber(r: NDArray[np.float64], delta: float = HUBER_DELTA) -> NDArray[np.float64]:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _huber_grad(r: NDArray[np.float64], delta: float = HUBER_DELTA) -> NDArray[np.float64]:
    return np.clip(r, -delta, delta)


@dataclass(frozen=True)
class _Stage1:
    """Stage-1 data: log N, log D and log L for single-epoch points; ``vary_n`` = >1 model size."""

    log_n: NDArray[np.float64]
    log_d: NDArray[np.float64]
    log_y: NDArray[np.float64]
    vary_n: bool

    def names(self) -> tuple[str, ...]:
        return ("a", "b", "e", "alpha", "beta") if self.vary_n else ("b", "e", "beta")

    def objective(self, theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        """Huber loss and its gradient; theta in the order of ``names()``."""
        v = dict(zip(self.names(), theta, strict=True))
        t_d = v["b"] - v["beta"] * self.log_d
        t_e = np.full_like(t_d, v["e"])
        terms = [t_d, t_e]
        if self.vary_n:
            terms.insert(0, v["a"] - v["alpha"] * self.log_n)
        stacked = np.stack(terms)  # (n_terms, n_points)
        top = stacked.max(axis=0)
        w = np.exp(stacked - top)
        total = w.sum(axis=0)
        r = top + np.log(total) - self.log_y
        w /= total  # softmax weights: d logsumexp / d term
        g = _huber_grad(r)
        grads = {"b": g @ w[-2], "beta": -(g * w[-2]) @ self.log_d, "e": g @ w[-1]}
        if self.vary_n:
            grads |= {"a": g @ w[0], "alpha": -(g * w[0]) @ self.log_n}
        return float(huber(r).sum()), np.array([grads[k] for k in self.names()])

    def grid_values(self, theta_grid: NDArray[np.float64]) -> NDArray[np.float64]:
        """Objective at every grid row at once, in chunks: (G, n_terms, n_points) floats."""
        out = np.empty(len(theta_grid))
        chunk = max(1, 2_000_000 // max(len(self.log_y), 1))
        for lo in range(0, len(theta_grid), chunk):
            v = dict(zip(self.names(), theta_grid[lo : lo + chunk].T, strict=True))
            terms = [
                v["b"][:, None] - v["beta"][:, None] * self.log_d,
                np.broadcast_to(v["e"][:, None], (len(v["e"]), len(self.log_y))),
            ]
            if self.vary_n:
                terms.insert(0, v["a"][:, None] - v["alpha"][:, None] * self.log_n)
            stacked = np.stack(terms, axis=1)  # (chunk, n_terms, n_points)
            top = stacked.max(axis=1)
            r = top + np.log(np.exp(stacked - top[:, None]).sum(axis=1)) - self.log_y
            out[lo : lo + chunk] = huber(r).sum(axis=1)
        return out


def _best_starts(stage: _Stage1, k: int, grid: dict[str, tuple[float, ...]]) -> list[np.ndarray]:
    theta_grid = np.array(list(itertools.product(*(grid[n] for n in stage.names()))))
    values = stage.grid_values(theta_grid)
    return [theta_grid[i] for i in np.argsort(values)[:k]]


def _fit_stage1(stage: _Stage1, starts: list[np.ndarray]) -> NDArray[np.float64]:
    bounds = [_BOUNDS[n] for n in stage.names()]
    best = None
    for x0 in starts:
        x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(
            stage.objective, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=_LBFGS
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def _stage1_params(stage: _Stage1, theta: NDArray[np.float64]) -> LawParams:
    v = dict(zip(stage.names(), theta, strict=True))
    if stage.vary_n:
        return LawParams(
            A=math.exp(v["a"]),
            B=math.exp(v["b"]),
            E=math.exp(v["e"]),
            alpha=v["alpha"],
            beta=v["beta"],
        )
    return LawParams(A=0.0, B=math.exp(v["b"]), E=math.exp(v["e"]), alpha=0.0, beta=v["beta"])


def _fit_stage2(frame: pd.DataFrame, base: LawParams) -> LawParams:
    """R_D* (and R_N* when some point has N > N_opt(U)) with stage-1 parameters frozen."""
    n, d, u = (frame[c].to_numpy(float) for c in ("n_params", "tokens", "unique_tokens"))
    log_y = np.log(frame["loss"].to_numpy(float))
    fit_rn = base.A > 0 and bool(np.any(n > compute_optimal_params(u, base)))

    def params(x: NDArray[np.float64]) -> LawParams:
        rn = math.exp(x[1]) if fit_rn else math.inf
        return base.with_(rd_star=math.exp(x[0]), rn_star=rn)

    def loss(x: NDArray[np.float64]) -> float:
        terms = log_terms(n, d, u, params(x))
        top = terms.max(axis=0)
        pred = top + np.log(np.exp(terms - top).sum(axis=0))
        return float(huber(pred - log_y).sum())

    grid = [np.log(g) for g in itertools.product(_R_STAR_GRID, repeat=2 if fit_rn else 1)]
    x0 = min(grid, key=loss)
    res = minimize(loss, x0, method="L-BFGS-B", bounds=[_LOG_R_BOUNDS] * len(x0), options=_LBFGS)
    fitted = params(res.x)
    return fitted if fit_rn else fitted.with_(rn_star=math.nan)


@dataclass(frozen=True)
class LawFit:
    """A fitted law for one objective, with R^2 (loss space) and bootstrap intervals."""

    objective: str
    params: LawParams
    r2: float
    n_points: int
    n_stage1_points: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    notes: tuple[str, ...] = ()

    def predict(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        return data_constrained_loss(
            frame["n_params"],
            frame["tokens"],
            frame["unique_tokens"],
            self.params.with_(rn_star=_inf_if_nan(self.params.rn_star)),
        )


def _inf_if_nan(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _prepare(points: pd.DataFrame, objective: str) -> pd.DataFrame:
    missing = [c for c in LAW_COLUMNS if c not in points.columns]
    if missing:
        raise AnalysisError(f"law fit for {objective!r}: points lack columns {missing}")
    frame = points.replace([np.inf, -np.inf], np.nan).dropna(subset=list(LAW_COLUMNS))
    return frame[(frame[list(LAW_COLUMNS)] > 0).all(axis=1)].reset_index(drop=True)


def _stage1_data(frame: pd.DataFrame, objective: str) -> _Stage1:
    single = frame[frame["tokens"] <= frame["unique_tokens"] * (1 + 1e-9)]
    vary_n = single["n_params"].nunique() > 1
    need = 6 if vary_n else 4
    if len(single) < need:
        raise AnalysisError(
            f"law fit for {objective!r}: {len(single)} single-epoch points (tokens <= unique "
            f"tokens), need at least {need}; evaluate more often in the first epoch "
            f"(budgets seen: {sorted(frame['unique_tokens'].unique().tolist())})"
        )
    return _Stage1(
        np.log(single["n_params"].to_numpy(float)),
        np.log(single["tokens"].to_numpy(float)),
        np.log(single["loss"].to_numpy(float)),
        vary_n,
    )


def _fit_joint(frame: pd.DataFrame, objective: str, x_prev=None) -> tuple[LawParams, np.ndarray]:
    """Fallback when there are too few single-epoch points for stage 1: every parameter at
    once on all points (same log-space Huber objective), R_N* only with several sizes."""
    n, d, u = (frame[c].to_numpy(float) for c in ("n_params", "tokens", "unique_tokens"))
    log_y = np.log(frame["loss"].to_numpy(float))
    vary_n = len(np.unique(n)) > 1
    names = ("a", "b", "e", "alpha", "beta", "rd", "rn") if vary_n else ("b", "e", "beta", "rd")
    if len(frame) < len(names) + 2:
        raise AnalysisError(
            f"law fit for {objective!r}: {len(frame)} points, need at least "
            f"{len(names) + 2} for a joint fit of {', '.join(names)}"
        )

    def params(x: NDArray[np.float64]) -> LawParams:
        v = dict(zip(names, x, strict=True))
        a, alpha = (v["a"], v["alpha"]) if vary_n else (-np.inf, 0.0)
        return LawParams(
            A=math.exp(a),
            B=math.exp(v["b"]),
            E=math.exp(v["e"]),
            alpha=alpha,
            beta=v["beta"],
            rd_star=math.exp(v["rd"]),
            rn_star=math.exp(v["rn"]) if vary_n else math.inf,
        )

    def loss(x: NDArray[np.float64]) -> float:
        terms = log_terms(n, d, u, params(x))
        top = terms.max(axis=0)
        return float(huber(top + np.log(np.exp(terms - top).sum(axis=0)) - log_y).sum())

    grid = {k: v[::2] for k, v in _GRID.items()} | {
        "rd": np.log([1.0, 15.0, 200.0]),
        "rn": np.log([1.0, 15.0]),
    }
    # A bootstrap replicate starts from the full-data optimum only: close by, and 4x cheaper.
    if x_prev is not None and len(x_prev) == len(names):
        starts = [x_prev]
    else:
        starts = sorted(itertools.product(*(grid[k] for k in names)), key=loss)[:3]
    bounds = [_BOUNDS.get(k, _LOG_R_BOUNDS) for k in names]
    best = min(
        (
            minimize(loss, np.array(x0), method="L-BFGS-B", bounds=bounds, options=_LBFGS)
            for x0 in starts
        ),
        key=lambda r: r.fun,
    )
    fitted = params(best.x)
    return (fitted if vary_n else fitted.with_(A=0.0, rn_star=math.nan)), best.x


def _fit_once(frame: pd.DataFrame, objective: str, starts: int, x_prev=None) -> tuple:
    """Stage 1 then stage 2 -> (params, theta, n_stage1_points, method). Stage 1 assumes
    N' = N, true only where N <= N_opt(U): after a first pass, refit on those points when
    enough remain. Too few single-epoch points: one joint fit of all parameters instead."""
    try:
        stage = _stage1_data(frame, objective)
    except AnalysisError as err:
        if "single-epoch" not in str(err):
            raise
        params, theta = _fit_joint(frame, objective, x_prev)
        return params, theta, 0, "joint"
    if x_prev is not None and len(x_prev) != len(stage.names()):
        x_prev = None  # a resample can switch between the joint and two-stage layouts
    grid = _GRID if x_prev is None else {k: v[::2] for k, v in _GRID.items()}
    x0s = _best_starts(stage, starts, grid) + ([x_prev] if x_prev is not None else [])
    theta = _fit_stage1(stage, x0s)
    base, method = _stage1_params(stage, theta), "two-stage"
    if stage.vary_n:
        within = frame[frame["n_params"] <= compute_optimal_params(frame["unique_tokens"], base)]
        try:
            inner = _stage1_data(within, objective)
        except AnalysisError:
            inner = None
        if inner is not None and inner.vary_n and len(inner.log_y) < len(stage.log_y):
            theta = _fit_stage1(inner, [theta])
            base, stage = _stage1_params(inner, theta), inner
        else:
            method = "two-stage, stage 1 on all single-epoch points"
    return _fit_stage2(frame, base), theta, len(stage.log_y), method


def fit_data_constrained_law(
    points: pd.DataFrame,
    objective: str = "",
    *,
    n_boot: int = 200,
    n_starts: int = 5,
    seed: int = 0,
) -> LawFit:
    """Fit the law to ``points`` (n_params, tokens, unique_tokens, loss[, run_id]).

    Bootstrap resamples whole runs when ``run_id`` is present (points within a run are
    correlated), otherwise single points; intervals are the 2.5/97.5 percentiles.
    """
    frame = _prepare(points, objective)
    params, theta, n_stage1, method = _fit_once(frame, objective, n_starts)
    pred = data_constrained_loss(
        frame["n_params"],
        frame["tokens"],
        frame["unique_tokens"],
        params.with_(rn_star=_inf_if_nan(params.rn_star)),
    )
    y = frame["loss"].to_numpy(float)
    r2 = 1.0 - float(((y - pred) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300))
    notes = []
    if method == "joint":
        notes.append(
            "too few single-epoch points for the two-stage fit: joint fit of all "
            "parameters (evaluate within the first epoch for the published procedure)"
        )
    elif params.A > 0 and method != "two-stage":
        notes.append("stage 1 used single-epoch points with N > N_opt(U) (too few others)")
    if params.A == 0:
        notes.append("one model size: A/N'^alpha folded into E; R_N* not identifiable")
    elif math.isnan(params.rn_star):
        notes.append("no run has N > N_opt(U): R_N* not identifiable")
    boot = _bootstrap(frame, objective, theta, n_boot, seed)
    intervals = {
        col: (float(np.nanpercentile(boot[col], 2.5)), float(np.nanpercentile(boot[col], 97.5)))
        for col in boot.columns
        if boot[col].notna().any()
    }
    return LawFit(objective, params, r2, len(frame), n_stage1, intervals, boot, tuple(notes))


def _bootstrap(frame: pd.DataFrame, objective: str, theta, n_boot: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = frame.groupby("run_id").indices if "run_id" in frame else None
    keys = list(groups) if groups else None
    rows = []
    for _ in range(n_boot):
        if keys:
            pick = rng.integers(0, len(keys), len(keys))
            idx = np.concatenate([groups[keys[i]] for i in pick])
        else:
            idx = rng.integers(0, len(frame), len(frame))
        try:
            params = _fit_once(frame.iloc[idx], objective, 2, x_prev=theta)[0]
        except AnalysisError:
            continue  # a resample without enough single-epoch points says nothing
        rows.append(params.as_dict())
    return pd.DataFrame(rows, columns=list(LawParams.__dataclass_fields__))
