"""The per-budget table of C_crit on the compute-optimal frontier, with intervals: the study's
side of ``analysis.frontier`` (which holds the definition and the pure solvers).

``frontier_critical_compute(ar_fit, dlm_fit, budgets, *, flops_per_param, measured=None)`` ->
``FrontierResult``: one row per budget (the DuckDB ``frontier_crossovers`` table, see
docs/schema.md) with C_crit from the point laws, a 95% interval that is the hull of the laws'
paired bootstrap draws and their profile-likelihood draws, P(crossover) over the bootstrap
draws, each objective's optimum there and whether it lies outside what the study measured; or
'not identified: <objective> <parameter>: <why>' and no numbers when a law is not pinned (fewer
than 3 model sizes: ``analysis.fits.stage1_gate``). C_crit(U) = k U^b is fitted apart for
crossovers inside and outside the measured range. How often the interval holds the truth is
simulated by ``analysis.frontier_coverage`` (numbers in bench/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.critical_compute import PowerLawFit, fit_power_law
from analysis.fits import PARAMS, LawFit
from analysis.frontier import FrontierCrossover, frontier_crossover
from analysis.laws import LawParams


@dataclass(frozen=True)
class MeasuredRange:
    """What the study measured: a frontier crossover outside it is extrapolated by the laws."""

    n_params: tuple[float, float]
    epochs: tuple[float, float]
    compute: tuple[float, float]


@dataclass(frozen=True)
class FrontierResult:
    table: pd.DataFrame
    draws: NDArray[np.float64]  # (n_draws, n_budgets): C_crit per draw; 0 ahead, inf never
    power_fits: list[PowerLawFit] = field(default_factory=list)


def frontier_gate(ar_fit: LawFit | None, dlm_fit: LawFit | None) -> str | None:
    """None when both laws pin every parameter (identified, or frozen as given); else
    'not identified: <objective> <parameter>: <why>' for the first that does not."""
    for objective, fit in (("ar", ar_fit), ("dlm", dlm_fit)):
        if fit is None:
            return f"not identified: no law fit for {objective!r}"
        for name in PARAMS:
            est = fit.estimates[name]
            if not est.identified and est.status != "frozen (given)":
                why = est.status.removeprefix("not identified: ")
                return f"not identified: {objective} {name}: {why}"
        if fit.params is None:  # pragma: no cover - an identified fit always has parameters
            return f"not identified: {objective} law has no parameters"
    return None


def _draw_value(x: FrontierCrossover) -> float:
    # Interval convention of the crossovers table: 0 = DLM ahead from the start, inf = never.
    return {"crossover": x.compute, "dlm_ahead_throughout": 0.0}.get(x.status, math.inf)


def _paired_draws(ar_fit: LawFit, dlm_fit: LawFit) -> list[tuple[LawParams, LawParams]]:
    n = min(len(ar_fit.bootstrap), len(dlm_fit.bootstrap))
    return [
        tuple(LawParams(**f.bootstrap.iloc[i][list(PARAMS)].to_dict()) for f in (ar_fit, dlm_fit))
        for i in range(n)
    ]


def _profile_candidates(fit: LawFit) -> list[LawParams]:
    """Parameter vectors along the R_D* and R_N* profiles inside their profile-likelihood
    intervals: the laws the data cannot tell from the best one, each minimised over the rest."""
    out = []
    for theta_name, param in (("log_rd", "rd_star"), ("log_rn", "rn_star")):
        prof, est = fit.profiles.get(theta_name), fit.estimates[param]
        if prof is None or est.profile is None or not set(PARAMS) <= set(prof.columns):
            continue
        lo, hi = est.profile
        inside = prof[(prof["value"] >= lo) & (prof["value"] <= hi)]
        out += [LawParams(**r) for r in inside[list(PARAMS)].to_dict("records")]
    return out


def _extrapolation(x: FrontierCrossover, measured: MeasuredRange | None) -> tuple[bool, str]:
    """Whether C_crit or either objective's optimal N or epochs there lie outside the study."""
    if measured is None or x.status != "crossover":
        return False, ""
    checks = (
        ("C_crit", x.compute, measured.compute),
        ("AR's optimal N", x.n_params_ar, measured.n_params),
        ("DLM's optimal N", x.n_params_dlm, measured.n_params),
        ("AR's optimal epochs", x.epochs_ar, measured.epochs),
        ("DLM's optimal epochs", x.epochs_dlm, measured.epochs),
    )
    out = [
        f"{name} {value:.3g} outside the measured [{lo:.3g}, {hi:.3g}]"
        for name, value, (lo, hi) in checks
        if not lo <= value <= hi
    ]
    return bool(out), "; ".join(out)


def frontier_critical_compute(
    ar_fit: LawFit | None,
    dlm_fit: LawFit | None,
    budgets: Sequence[float],
    *,
    flops_per_param: tuple[float, float] = (6.0, 6.0),
    measured: MeasuredRange | None = None,
    compute_range: tuple[float, float] | None = None,
) -> FrontierResult:
    """One row per budget U: C_crit on the frontier with the point laws, its 95% interval and
    P(crossover) over the laws' paired bootstrap draws (draw i of AR with draw i of DLM; a draw
    that never crosses counts as +inf, one where DLM leads throughout as 0, so the interval may
    be open), or 'not identified: <why>' and no numbers. ``flops_per_param`` = (k_AR, k_DLM)."""
    budgets = [float(u) for u in budgets]
    reason = frontier_gate(ar_fit, dlm_fit)
    if reason is not None:
        rows = [
            _widen(_row(u, reason, None, flops_per_param, None, (False, "")), []) for u in budgets
        ]
        return FrontierResult(_frame(rows), np.empty((0, len(budgets))))
    kw = {"flops_per_param": flops_per_param, "compute_range": compute_range}
    draws = _paired_draws(ar_fit, dlm_fit)
    values = np.array(
        [[_draw_value(frontier_crossover(a, d, u, **kw)) for u in budgets] for a, d in draws]
    ).reshape(len(draws), len(budgets))
    # Profile draws: each objective's profile-interval laws against the other's best fit.
    pairs = [(a, dlm_fit.params) for a in _profile_candidates(ar_fit)]
    pairs += [(ar_fit.params, d) for d in _profile_candidates(dlm_fit)]
    rows = []
    for j, u in enumerate(budgets):
        point = frontier_crossover(ar_fit.params, dlm_fit.params, u, **kw)
        extra = _extrapolation(point, measured)
        prof = [_draw_value(frontier_crossover(a, d, u, **kw)) for a, d in pairs]
        row = _row(u, point.status, point, flops_per_param, values[:, j], extra)
        rows.append(_widen(row, prof))
    table = _frame(rows)
    return FrontierResult(table, values, _power_fits(table, values))


def _bootstrap_interval(point: float, draws: NDArray[np.float64]) -> tuple[float, float]:
    """Hull of the percentile interval and the basic (reverse-percentile) one in log C:
    point / f to point * f with f the larger of the two percentiles' ratios to the point. The
    percentile interval alone sits on the wrong side when the point estimate is biased (C_crit
    is a strongly non-linear function of both laws). An open edge (draws at 0: DLM ahead
    throughout; at inf: never crossing) stays open and does not widen the other edge."""
    q_lo, q_hi = (float(v) for v in np.quantile(draws, [0.025, 0.975], method="inverted_cdf"))
    if not (math.isfinite(point) and point > 0):
        return q_lo, q_hi
    ratios = ([point / q_lo] if q_lo > 0 else []) + ([q_hi / point] if q_hi < math.inf else [])
    f = max(ratios, default=1.0)
    return (point / f if q_lo > 0 else 0.0), (point * f if q_hi < math.inf else math.inf)


def _row(u, status, point, k, draws, extra) -> dict[str, object]:
    p = point or FrontierCrossover(status)
    crossed = p.status == "crossover"
    lo = hi = prob = math.nan
    if draws is not None and len(draws):
        lo, hi = _bootstrap_interval(p.compute if crossed else math.nan, draws)
        prob = float(np.mean((draws > 0) & np.isfinite(draws)))
    note = "; ".join(
        s
        for s in (
            extra[1],
            "an optimum lies on the edge of the searched epochs" if p.at_bound else "",
            "interval: paired bootstrap draws of both law fits (runs resampled)"
            if draws is not None and len(draws)
            else "",
        )
        if s
    )
    return {
        "unique_tokens": u,
        "status": status,
        "compute": p.compute if crossed else math.nan,
        "compute_lo": lo,
        "compute_hi": hi,
        "p_crossover": prob,
        "n_draws": 0 if draws is None else len(draws),
        "loss": p.loss,
        "n_params_ar": p.n_params_ar,
        "epochs_ar": p.epochs_ar,
        "n_params_dlm": p.n_params_dlm,
        "epochs_dlm": p.epochs_dlm,
        "extrapolated": extra[0],
        "flops_per_param_ar": float(k[0]),
        "flops_per_param_dlm": float(k[1]),
        "note": note,
    }


def _widen(row: dict[str, object], profile_values: list[float]) -> dict[str, object]:
    """The reported interval is the hull of the bootstrap interval and the profile draws'
    range (as for R_D* in ``analysis.fits``); ``profile_lo``/``profile_hi`` keep the latter."""
    lo = hi = math.nan
    if profile_values:
        lo, hi = min(profile_values), max(profile_values)
        row["compute_lo"] = np.fmin(row["compute_lo"], lo)  # fmin/fmax: a NaN side is absent
        row["compute_hi"] = np.fmax(row["compute_hi"], hi)
    return row | {"profile_lo": lo, "profile_hi": hi, "n_profile": len(profile_values)}


FLOAT_COLUMNS = (
    "unique_tokens", "compute", "compute_lo", "compute_hi", "p_crossover", "loss",
    "n_params_ar", "epochs_ar", "n_params_dlm", "epochs_dlm",
    "flops_per_param_ar", "flops_per_param_dlm", "profile_lo", "profile_hi",
)  # fmt: skip


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    # Float columns stay float even when all-missing, so DuckDB stores NULL (not a NULL type).
    frame = pd.DataFrame(rows)
    return frame.astype(
        {c: float for c in FLOAT_COLUMNS} | {"n_draws": int, "n_profile": int, "extrapolated": bool}
    )


def _power_fits(table: pd.DataFrame, values: NDArray[np.float64]) -> list[PowerLawFit]:
    """C_crit(U) = k U^b over the budgets that cross, within and beyond the measured range
    apart; the intervals from the same paired draws (those crossing at >= 2 of the budgets)."""
    fits = []
    for beyond, label in (
        (False, "frontier, within measured range"),
        (True, "frontier, extrapolated"),
    ):
        sel = ((table["status"] == "crossover") & (table["extrapolated"] == beyond)).to_numpy()
        if table.loc[sel, "unique_tokens"].nunique() < 2:
            continue
        u = table.loc[sel, "unique_tokens"].to_numpy(float)
        fit = fit_power_law(u, table.loc[sel, "compute"], source=label, n_boot=0)
        samples = []
        for row in values[:, sel]:
            ok = np.isfinite(row) & (row > 0)
            if ok.sum() >= 2:
                samples.append(np.polyfit(np.log(u[ok]), np.log(row[ok]), 1))
        if samples:
            s = np.array(samples)
            b_iv = tuple(float(x) for x in np.percentile(s[:, 0], [2.5, 97.5]))
            k_iv = tuple(float(np.exp(x)) for x in np.percentile(s[:, 1], [2.5, 97.5]))
            fit = PowerLawFit(fit.k, fit.b, k_iv, b_iv, fit.n_budgets, label)
        fits.append(fit)
    return fits


def frontier_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report shows it: C_crit with its interval spelled out (open edges,
    unknown when no draws), P(crossover) beside it, and 'not identified' rows without numbers."""
    if table.empty:
        return table
    out = []
    for _, r in table.iterrows():
        out.append(
            {
                "unique tokens": f"{r['unique_tokens']:,.0f}",
                "C_crit (FLOPs) [95%]": _interval(r),
                "P(crossover)": "" if math.isnan(r["p_crossover"]) else f"{r['p_crossover']:.2f}",
                "AR optimum there": _optimum(r["n_params_ar"], r["epochs_ar"]),
                "DLM optimum there": _optimum(r["n_params_dlm"], r["epochs_dlm"]),
                "FLOPs/token/param AR, DLM": (
                    f"{r['flops_per_param_ar']:.3g}, {r['flops_per_param_dlm']:.3g}"
                ),
                "note": r["note"],
            }
        )
    return pd.DataFrame(out)


def _optimum(n: float, epochs: float) -> str:
    return "" if math.isnan(n) else f"N {n:.3g}, {epochs:.3g} epochs"


def _interval(r: pd.Series) -> str:
    if r["status"] != "crossover":
        return r["status"].replace("_", " ")
    lo, hi = r["compute_lo"], r["compute_hi"]
    if math.isnan(lo):
        return f"{r['compute']:.3g} [interval unknown]"
    lo_s = "DLM ahead" if lo == 0 else f"{lo:.3g}"
    hi_s = "not crossed" if math.isinf(hi) else f"{hi:.3g}"
    return f"{r['compute']:.3g} [{lo_s}, {hi_s}]"
