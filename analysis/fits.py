"""Fitting the data-constrained law per objective, with identifiability gates and intervals.

Procedure (Hoffmann et al. / Muennighoff et al.): minimise the sum of Huber_delta(log L_pred -
log L_obs), delta = 1e-3, over final losses of separate runs (``analysis.law_objective``); the
optimiser (``analysis.law_optimize``) is multi-start, refits all parameters jointly and checks
itself against 1-D profiles over R_D* and R_N*. Each parameter then gets a status:

- A, alpha, E (and B, beta with them) need >= 3 model sizes spanning >= 4x and >= 3 token
  counts: with fewer, A / N'^alpha cannot be told apart from E, and nothing is reported.
- R_D* needs runs beyond one epoch at >= 2 budgets and >= 2 epoch levels;
- R_N* needs >= 3 runs at >= 2 sizes with N > 2 N_opt(U) (excess parameters to decay).

Intervals: bootstrap over runs (warm-started at the point estimate) for every identified
parameter, plus profile-likelihood intervals for R_D* and R_N*; the reported interval is the
hull of the two and may be one-sided ("R_D* > 40") when the objective stays flat to the bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.errors import AnalysisError
from analysis.law_objective import BOUNDS, NAMES, LawData, lr_scale
from analysis.law_optimize import Problem, fit_point, profile_interval, refit
from analysis.laws import LawParams, compute_optimal_params, data_constrained_loss

LAW_COLUMNS = ("n_params", "tokens", "unique_tokens", "loss")
PARAMS = ("A", "B", "E", "alpha", "beta", "rd_star", "rn_star")
_THETA_OF = dict(zip(PARAMS, NAMES, strict=True))
_LOG_SCALE = {"A", "B", "E", "rd_star", "rn_star"}
MIN_SIZES, MIN_SIZE_SPAN, MIN_TOKEN_LEVELS = 3, 4.0, 3
CHI2_1_95 = 3.841458820694124
IDENTIFIED = "identified"


@dataclass(frozen=True)
class Estimate:
    """One parameter: value and 95% interval when identified, else only the reason.

    ``lo``/``hi`` is the reported interval (hull of bootstrap and profile); ``hi = inf`` or
    ``lo = 0`` mark one-sided intervals, ``None`` an interval that could not be computed.
    """

    name: str
    status: str
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    bootstrap: tuple[float, float] | None = None
    profile: tuple[float, float] | None = None

    @property
    def identified(self) -> bool:
        return self.status == IDENTIFIED

    def describe(self) -> str:
        """'15.4 [9.1, 30.2]', '> 40', '< 3', '2.1 [interval unknown]', '520.8 (frozen,
        given)' or the status ('not identified: <why>')."""
        if self.status == "frozen (given)" and self.value is not None:
            return f"{self.value:.4g} (frozen, given)"
        if not self.identified or self.value is None:
            return self.status
        if self.lo is None or self.hi is None:
            return f"{self.value:.4g} [interval unknown]"
        if math.isinf(self.hi):
            return f"> {self.lo:.3g}"
        if self.lo <= 0:
            return f"< {self.hi:.3g}"
        return f"{self.value:.4g} [{self.lo:.3g}, {self.hi:.3g}]"


@dataclass(frozen=True)
class LawFit:
    """A fitted law for one objective. ``params`` is None when stage 1 is not identified."""

    objective: str
    estimates: dict[str, Estimate]
    params: LawParams | None
    objective_value: float
    r2: float
    n_points: int
    bootstrap: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    profiles: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """Reported intervals of identified parameters with one."""
        return {
            n: (e.lo, e.hi)
            for n, e in self.estimates.items()
            if e.identified and e.lo is not None and e.hi is not None
        }

    def identified(self, name: str) -> bool:
        return self.estimates[name].identified

    def predict(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        if self.params is None:
            raise AnalysisError(f"law fit for {self.objective!r}: {self.estimates['A'].status}")
        return data_constrained_loss(
            frame["n_params"], frame["tokens"], frame["unique_tokens"], self.params
        )


def theta_of(p: LawParams) -> NDArray[np.float64]:
    """LawParams -> the optimiser's vector (a, b, e, alpha, beta, log R_D*, log R_N*)."""
    return np.array(
        [math.log(p.A), math.log(p.B), math.log(p.E), p.alpha, p.beta]
        + [math.log(p.rd_star), math.log(p.rn_star)]
    )


def params_of(theta: NDArray[np.float64]) -> LawParams:
    a, b, e, alpha, beta, lrd, lrn = (float(x) for x in theta)
    return LawParams(
        math.exp(a), math.exp(b), math.exp(e), alpha, beta, math.exp(lrd), math.exp(lrn)
    )


def prepare_points(points: pd.DataFrame, objective: str = "") -> pd.DataFrame:
    missing = [c for c in LAW_COLUMNS if c not in points.columns]
    if missing:
        raise AnalysisError(f"law fit for {objective!r}: points lack columns {missing}")
    frame = points.replace([np.inf, -np.inf], np.nan).dropna(subset=list(LAW_COLUMNS))
    return frame[(frame[list(LAW_COLUMNS)] > 0).all(axis=1)].reset_index(drop=True)


def objective_at(points: pd.DataFrame, p: LawParams) -> float:
    """The fit objective (sum of Huber terms) of ``points`` at parameters ``p``."""
    return LawData.from_frame(prepare_points(points)).value(theta_of(p)[None, :])


def stage1_gate(frame: pd.DataFrame) -> str:
    """IDENTIFIED, or 'not identified: <why>' for A, alpha, E, B, beta."""
    sizes = np.unique(frame["n_params"].to_numpy(float))
    tokens = frame["tokens"].nunique()
    if len(sizes) < MIN_SIZES:
        return (
            f"not identified: {len(sizes)} model size(s), need >= {MIN_SIZES} "
            f"(A/N^alpha is otherwise indistinguishable from E)"
        )
    if sizes.max() / sizes.min() < MIN_SIZE_SPAN:
        return f"not identified: model sizes span {sizes.max() / sizes.min():.2g}x, need >= 4x"
    if tokens < MIN_TOKEN_LEVELS:
        return f"not identified: {tokens} token count(s), need >= {MIN_TOKEN_LEVELS}"
    return IDENTIFIED


def stage2_gates(frame: pd.DataFrame, p: LawParams) -> dict[str, str]:
    repeated = frame[frame["tokens"] > frame["unique_tokens"] * 1.05]
    budgets = repeated["unique_tokens"].nunique()
    levels = (repeated["tokens"] / repeated["unique_tokens"]).round(3).nunique()
    rd = IDENTIFIED
    if budgets < 2 or levels < 2:
        rd = (
            f"not identified: runs beyond one epoch at {budgets} budget(s) and {levels} epoch "
            "level(s), need >= 2 of each"
        )
    excess = frame[frame["n_params"] > 2 * compute_optimal_params(frame["unique_tokens"], p)]
    rn = IDENTIFIED
    if len(excess) < 3 or excess["n_params"].nunique() < 2:
        rn = (
            f"not identified: {len(excess)} run(s) at {excess['n_params'].nunique()} size(s) "
            "with N > 2 N_opt(U), need >= 3 at >= 2 sizes"
        )
    return {"rd_star": rd, "rn_star": rn}


def fit_data_constrained_law(
    points: pd.DataFrame,
    objective: str = "",
    *,
    n_boot: int = 100,
    seed: int = 0,
    frozen: Mapping[str, float] | None = None,
    n_starts: int = 5,
) -> LawFit:
    """Fit the law to ``points`` (n_params, tokens, unique_tokens, loss[, run_id]): one row per
    completed run (final or annealed loss). ``frozen`` fixes named parameters (e.g. published
    stage-1 constants: {"A": 520.8, ...}); their status is then 'frozen'."""
    frame = prepare_points(points, objective)
    frozen = dict(frozen or {})
    unknown = set(frozen) - set(PARAMS)
    if unknown:
        raise AnalysisError(f"frozen: unknown parameter(s) {sorted(unknown)}; known {PARAMS}")
    gate1 = "frozen (given)" if frozen.keys() >= {"A", "E", "alpha"} else stage1_gate(frame)
    if len(frame) < 2 * len(PARAMS) - len(frozen) and gate1 == IDENTIFIED:
        gate1 = f"not identified: {len(frame)} runs, need >= {2 * len(PARAMS) - len(frozen)}"
    if gate1.startswith("not identified"):
        estimates = {
            n: Estimate(n, gate1 if n[-5:] != "_star" else _needs_stage1(gate1)) for n in PARAMS
        }
        return LawFit(objective, estimates, None, math.nan, math.nan, len(frame), notes=(gate1,))
    data = LawData.from_frame(frame)
    base = np.zeros(len(NAMES))
    for name, value in frozen.items():
        base[NAMES.index(_THETA_OF[name])] = value if name in ("alpha", "beta") else math.log(value)
    free = tuple(_THETA_OF[n] for n in PARAMS if n not in frozen)
    problem = Problem(data, free, base)
    single = frame[frame["tokens"] <= frame["unique_tokens"] * (1 + 1e-9)]
    single_data = LawData.from_frame(single if len(single) >= 6 else frame)
    theta, value, profiles = fit_point(problem, single_data, n_starts=n_starts)
    params = params_of(theta)
    boot = _bootstrap(problem, frame, theta, n_boot, seed)
    xi = lr_scale(data.residuals(theta[None, :]), len(free))
    threshold = value + 0.5 * CHI2_1_95 * xi
    gates = {n: (gate1 if n not in frozen else "frozen (given)") for n in PARAMS[:5]}
    gates |= stage2_gates(frame, params)
    prof_iv = {
        n: tuple(math.exp(x) for x in profile_interval(problem, p, threshold))
        for n, p in profiles.items()
    }
    estimates = {
        n: _estimate(n, gates[n], params, boot, prof_iv.get(_THETA_OF[n]), frozen) for n in PARAMS
    }
    y = frame["loss"].to_numpy(float)
    pred = np.exp(data.predict_log(theta[None, :])[0])
    r2 = 1.0 - float(((y - pred) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300))
    # Each profile point keeps the full parameter vector it was minimised to (for intervals of
    # derived quantities, e.g. ``analysis.frontier``).
    prof = {
        n: pd.DataFrame({"value": np.exp(p.grid), "objective": p.values}).join(
            pd.DataFrame([params_of(t).as_dict() for t in p.argmins], columns=list(PARAMS))
        )
        for n, p in profiles.items()
    }
    notes = tuple(f"{n}: {e.status}" for n, e in estimates.items() if not e.identified)
    return LawFit(objective, estimates, params, value, r2, len(frame), boot, prof, notes)


def _needs_stage1(gate1: str) -> str:
    return f"not identified: needs A, alpha, E first ({gate1.removeprefix('not identified: ')})"


def _bootstrap(
    problem: Problem, frame: pd.DataFrame, theta: NDArray[np.float64], n_boot: int, seed: int
) -> pd.DataFrame:
    """Resample runs with replacement (rows are runs); each draw warm-starts at ``theta``."""
    rng = np.random.default_rng(seed)
    groups = list(frame.groupby("run_id").indices.values()) if "run_id" in frame else None
    rows = []
    for _ in range(n_boot):
        if groups:
            idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        else:
            idx = rng.integers(0, len(frame), len(frame))
        draw = Problem(problem.data.take(idx), problem.free, problem.base)
        rows.append(params_of(refit(draw, theta)).as_dict())
    return pd.DataFrame(rows, columns=list(PARAMS))


def _estimate(
    name: str,
    gate: str,
    params: LawParams,
    boot: pd.DataFrame,
    p_iv: tuple[float, float] | None,
    frozen: Mapping[str, float],
) -> Estimate:
    value = getattr(params, name)
    if name in frozen:
        return Estimate(name, "frozen (given)", value)  # no interval: it was not estimated
    if gate != IDENTIFIED:
        return Estimate(name, gate)
    b_iv = None
    if len(boot):
        b_iv = tuple(float(x) for x in np.percentile(boot[name], [2.5, 97.5]))
    ivs = [iv for iv in (b_iv, p_iv) if iv is not None]
    if not ivs:
        return Estimate(name, IDENTIFIED, value)
    lo, hi = min(iv[0] for iv in ivs), max(iv[1] for iv in ivs)
    if name in ("rd_star", "rn_star"):
        top, bottom = math.exp(BOUNDS["log_rd"][1]), math.exp(BOUNDS["log_rd"][0])
        hi = math.inf if hi >= 0.5 * top else hi
        lo = 0.0 if lo <= 2 * bottom else lo
        if lo == 0.0 and math.isinf(hi):
            return Estimate(
                name,
                "not identified: objective flat over the whole range",
                None,
                bootstrap=b_iv,
                profile=p_iv,
            )
    return Estimate(name, IDENTIFIED, value, lo, hi, b_iv, p_iv)


def fit_table(fits: Mapping[str, LawFit]) -> pd.DataFrame:
    """One row per (objective, parameter) for the DuckDB ``law_fits`` table: status always,
    numbers only where identified (NULL otherwise: never a zero-width stand-in)."""
    rows = []
    for obj, fit in fits.items():
        for name, e in fit.estimates.items():
            boot, prof = e.bootstrap or (None, None), e.profile or (None, None)
            rows.append(
                {
                    "objective": obj,
                    "parameter": name,
                    "status": e.status,
                    "value": e.value if e.identified else None,
                    "lo": e.lo if e.identified else None,
                    "hi": e.hi if e.identified else None,
                    "bootstrap_lo": boot[0],
                    "bootstrap_hi": boot[1],
                    "profile_lo": prof[0],
                    "profile_hi": prof[1],
                    "reported": e.describe(),
                    "n_points": fit.n_points,
                    "objective_value": fit.objective_value,
                }
            )
    return pd.DataFrame(rows)
