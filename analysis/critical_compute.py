"""Critical compute C_crit(U) = k U^b: from measured crossovers, and from the fitted laws.

C_crit is the DLM's own training compute at the crossover (``analysis.crossover`` keeps AR's
beside it); crossovers that the laws place beyond the measured epochs are fitted apart from
those within them, never mixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.crossover import _crossing
from analysis.errors import AnalysisError
from analysis.fits import LawFit
from analysis.laws import LawParams, data_constrained_loss


@dataclass(frozen=True)
class PowerLawFit:
    """C_crit(U) = k * U^b, fitted in log space; intervals are bootstrap 2.5/97.5 percentiles."""

    k: float
    b: float
    k_interval: tuple[float, float]
    b_interval: tuple[float, float]
    n_budgets: int
    source: str

    def __call__(self, unique_tokens: np.ndarray | float) -> np.ndarray:
        return self.k * np.asarray(unique_tokens, dtype=float) ** self.b


def fit_power_law(
    unique_tokens: np.ndarray,
    compute: np.ndarray,
    log_sd: np.ndarray | None = None,
    *,
    source: str = "measured",
    n_boot: int = 500,
    seed: int = 0,
) -> PowerLawFit:
    """OLS of log C on log U; the bootstrap redraws each log C with its own spread ``log_sd``
    (from the crossover's interval), or resamples budgets when none is given."""
    u, c = np.asarray(unique_tokens, float), np.asarray(compute, float)
    keep = np.isfinite(u) & np.isfinite(c) & (u > 0) & (c > 0)
    u, c = u[keep], c[keep]
    if len(np.unique(u)) < 2:
        raise AnalysisError(
            f"C_crit(U) ({source}) needs crossovers at >= 2 budgets, got "
            f"{sorted(set(u.astype(int).tolist()))}"
        )
    lu, lc = np.log(u), np.log(c)
    b, logk = np.polyfit(lu, lc, 1)
    rng = np.random.default_rng(seed)
    sd = None if log_sd is None else np.nan_to_num(np.asarray(log_sd, float)[keep], nan=0.0)
    samples = []
    for _ in range(n_boot):
        if sd is not None:
            xs, ys = lu, lc + sd * rng.standard_normal(len(lc))
        else:
            idx = rng.integers(0, len(lu), len(lu))
            if len(np.unique(idx)) < 2:
                continue
            xs, ys = lu[idx], lc[idx]
        samples.append(np.polyfit(xs, ys, 1))
    s = np.array(samples) if samples else np.array([[b, logk]])
    b_iv = tuple(float(x) for x in np.percentile(s[:, 0], [2.5, 97.5]))
    k_iv = tuple(float(np.exp(x)) for x in np.percentile(s[:, 1], [2.5, 97.5]))
    return PowerLawFit(float(np.exp(logk)), float(b), k_iv, b_iv, len(np.unique(u)), source)


def critical_compute_measured(
    table: pd.DataFrame, model_name: str, metric: str, **kw: object
) -> PowerLawFit:
    """C_crit(U) from the measured crossovers of one model and metric."""
    rows = table[
        (table["model_name"] == model_name)
        & (table["metric"] == metric)
        & (table["status"] == "crossover")
    ]
    # 95% interval width in log space -> standard deviation (divide by 2 * 1.96).
    with np.errstate(divide="ignore"):
        log_sd = (np.log(rows["flops_hi"]) - np.log(rows["flops_lo"])) / 3.92
    # An open interval (some draws never cross) has no finite width: draw such a point with
    # the widest finite spread seen, or a factor e without any.
    finite = log_sd[np.isfinite(log_sd)]
    log_sd = log_sd.where(np.isfinite(log_sd), finite.max() if len(finite) else 1.0)
    return fit_power_law(
        rows["unique_tokens"].to_numpy(),
        rows["flops"].to_numpy(),
        log_sd.to_numpy(),
        source=f"measured {metric}",
        **kw,
    )


def law_crossover_tokens(
    ar: LawParams, dlm: LawParams, n_params: float, unique_tokens: float, max_epochs: float = 1e4
) -> float:
    """Tokens D at which L_DLM(N, D, U) drops below L_AR(N, D, U) for good, or NaN if never
    within (0.01, max_epochs] epochs. This is the law's answer, extrapolated by construction."""
    d = np.geomspace(0.01 * unique_tokens, max_epochs * unique_tokens, 4000)
    diff = data_constrained_loss(n_params, d, unique_tokens, _finite(dlm)) - data_constrained_loss(
        n_params, d, unique_tokens, _finite(ar)
    )
    status, epoch = _crossing(d / unique_tokens, diff)
    return epoch * unique_tokens if status == "crossover" else math.nan


def _finite(p: LawParams) -> LawParams:
    # Fits report a non-identifiable R_N* as NaN; the law then treats extra parameters as fresh.
    return p.with_(rn_star=math.inf) if math.isnan(p.rn_star) else p


def critical_compute_from_laws(
    ar: LawFit,
    dlm: LawFit,
    n_params: float,
    unique_tokens: list[float],
    *,
    flops_per_token: float | None = None,
    measured_max_epochs: float | None = None,
) -> tuple[pd.DataFrame, list[PowerLawFit]]:
    """Solve L_DLM = L_AR on the fitted laws at each budget, then fit C_crit(U) = k U^b
    separately to crossovers within the measured epochs and to extrapolated ones (past
    ``measured_max_epochs``): the law's extrapolation is never mixed with what was measured.

    Compute is the DLM's: ``flops_per_token * D`` (pass the DLM runs' own FLOPs per token;
    default 6 N D). Intervals pair the two laws' bootstrap draws.
    """
    fpt = flops_per_token or 6.0 * n_params
    rows = []
    for u in unique_tokens:
        d = law_crossover_tokens(ar.params, dlm.params, n_params, u)
        epochs = d / u
        beyond = measured_max_epochs is not None and epochs > measured_max_epochs
        rows.append(
            {"unique_tokens": u, "epoch": epochs, "flops": fpt * d, "beyond_measured": bool(beyond)}
        )
    table = pd.DataFrame(rows)
    fits = []
    for beyond, label in ((False, "laws, within measured epochs"), (True, "laws, extrapolated")):
        part = table[(table["beyond_measured"] == beyond) & np.isfinite(table["flops"])]
        if part["unique_tokens"].nunique() < 2:
            continue
        fits.append(_law_power_fit(ar, dlm, n_params, part, fpt, label))
    return table, fits


def _law_power_fit(
    ar: LawFit, dlm: LawFit, n_params: float, part: pd.DataFrame, fpt: float, label: str
) -> PowerLawFit:
    budgets = part["unique_tokens"].to_numpy(float)
    fit = fit_power_law(budgets, part["flops"], source=label, n_boot=0)
    samples = []
    for i in range(min(len(ar.bootstrap), len(dlm.bootstrap))):
        p_ar, p_dlm = (LawParams(**f.bootstrap.iloc[i].to_dict()) for f in (ar, dlm))
        c = np.array([fpt * law_crossover_tokens(p_ar, p_dlm, n_params, u) for u in budgets])
        ok = np.isfinite(c)
        if ok.sum() >= 2:
            samples.append(np.polyfit(np.log(budgets[ok]), np.log(c[ok]), 1))
    if not samples:
        return fit
    s = np.array(samples)
    return PowerLawFit(
        fit.k,
        fit.b,
        tuple(float(np.exp(x)) for x in np.percentile(s[:, 1], [2.5, 97.5])),
        tuple(float(x) for x in np.percentile(s[:, 0], [2.5, 97.5])),
        fit.n_budgets,
        label,
    )
