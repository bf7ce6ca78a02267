"""Where DLM overtakes AR: per (model, budget) crossovers with bootstrap intervals, C_crit(U).

Input is the store's ``eval_points`` view (one row per finite evaluation). For each
(model_name, unique_tokens) the metric is a smooth curve of epochs per objective: the final
evaluation of each run when every objective has >= 3 epoch settings (the sweep's matched design),
else every evaluation along the runs. The crossover is the epoch from which DLM stays better
until the end of the range both objectives were measured on; outside it nothing is claimed.
Its 95% interval comes from draws of the per-epoch means whose noise model
(``analysis.crossover_draws``) is what the design pins: seed spread, the scatter of one-seed runs
about a cubic, or nothing ("not identified": no interval, no P(crossover), the point kept).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.crossover_draws import (
    OBJECTIVES,
    ObjectiveMeans,
    basis_of,
    draw_means,
    objective_means,
)
from analysis.curves import SmoothCurve, fit_smooth_curve
from analysis.errors import AnalysisError

METRICS = {"val_loss": "lower", "mc_acc": "higher"}
# Names the interval's method in the stored table's key (``crossover_store``): change it when
# the draws change, so a table an earlier method wrote is recomputed.
INTERVAL_METHOD = "2026-11-30: one seed -> scatter about a cubic in log-epoch, >= 3 df"
GROUP = ["model_name", "unique_tokens"]
_GRID_POINTS = 400


def _point_se(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "val_loss":
        se = frame.get("val_loss_se", pd.Series(np.nan, index=frame.index)).to_numpy(float)
    else:
        p = frame["mc_acc"].to_numpy(float)
        n = frame.get("mc_n", pd.Series(np.nan, index=frame.index)).to_numpy(float)
        se = np.sqrt(np.clip(p * (1 - p), 1e-6, None) / n)
    return np.where(np.isfinite(se), se, np.nan)


def curve_points(evals: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """Points (objective, epoch, y, se, flops) for one (model, budget) group, and the mode."""
    frame = evals[np.isfinite(evals[metric].to_numpy(float))]
    settings = frame.groupby("objective")["run_epochs"].nunique()
    final = all(settings.get(o, 0) >= 3 for o in OBJECTIVES)
    if final:
        frame = frame.sort_values("step").groupby("run_id").tail(1)
    out = pd.DataFrame(
        {
            "run_id": frame["run_id"].to_numpy() if "run_id" in frame else "run",
            "seed": frame["seed"].to_numpy() if "seed" in frame else 0,
            "objective": frame["objective"].to_numpy(),
            "epoch": frame["epoch"].to_numpy(float),
            "y": frame[metric].to_numpy(float),
            "se": _point_se(frame, metric),
            "flops": frame.get("flops", pd.Series(np.nan, index=frame.index)).to_numpy(float),
        }
    )
    return out, "final" if final else "curve"


def _dlm_minus_ar(ar: SmoothCurve, dlm: SmoothCurve, grid: np.ndarray, metric: str) -> np.ndarray:
    """Negative where DLM is better."""
    sign = 1.0 if METRICS[metric] == "lower" else -1.0
    return sign * (dlm(grid) - ar(grid))


def _crossing(grid: np.ndarray, diff: np.ndarray) -> tuple[str, float]:
    if np.all(diff < 0):
        return "dlm_ahead_throughout", math.nan
    if diff[-1] >= 0:
        return "no_crossover", math.nan
    i = int(np.nonzero(diff >= 0)[0][-1])  # last grid point where AR is at least as good
    lx0, lx1 = np.log(grid[i]), np.log(grid[i + 1])
    frac = diff[i] / (diff[i] - diff[i + 1])  # linear root in log-epoch
    return "crossover", float(np.exp(lx0 + frac * (lx1 - lx0)))


def _flops_at(points: pd.DataFrame, epoch: float, objective: str) -> float:
    """Training compute of ``objective``'s runs at ``epoch``: its own FLOPs per epoch (the
    evals' ``flops`` column, as training_core.flops counts them: causal attention at half the
    bidirectional cost, so AR and DLM differ by a few percent) times epochs. Never pooled."""
    known = points[
        (points["objective"] == objective)
        & np.isfinite(points["flops"])
        & (points["flops"] > 0)
        & (points["epoch"] > 0)
    ]
    if known.empty or math.isnan(epoch):
        return math.nan
    # Compute is linear in tokens seen; the median ratio is robust to a stray evaluation row.
    slope = np.median(known["flops"] / known["epoch"])
    return float(slope * epoch)


def _fit_pair(
    points: pd.DataFrame, y: np.ndarray, lams: tuple[float | None, float | None] = (None, None)
) -> tuple[SmoothCurve, SmoothCurve]:
    """AR and DLM curves; ``y`` is (n_points,) or (n_points, B) bootstrap columns."""
    curves = []
    for obj, lam in zip(OBJECTIVES, lams, strict=True):
        mask = (points["objective"] == obj).to_numpy()
        curves.append(fit_smooth_curve(points["epoch"].to_numpy()[mask], y[mask], lam))
    return curves[0], curves[1]


def bootstrap_crossings(
    means: dict[str, ObjectiveMeans],
    metric: str,
    curves: tuple[SmoothCurve, SmoothCurve],
    grid: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> list[tuple[str, float]]:
    """(status, epoch) of each bootstrap draw of the per-epoch means (``crossover_draws``)."""
    rows, y_b = draw_means(means, n_boot, rng)
    # All replicates at once, sharing each curve's penalty: (n_points, B) -> (grid, B).
    b_ar, b_dlm = _fit_pair(rows, y_b, (curves[0].lam, curves[1].lam))
    diffs = _dlm_minus_ar(b_ar, b_dlm, grid, metric)
    return [_crossing(grid, diffs[:, j]) for j in range(n_boot)]


def noise_models(points: pd.DataFrame) -> tuple[dict[str, ObjectiveMeans], str]:
    """Per objective: per-epoch means and what their draws rest on; the interval's basis."""
    own_runs = points["run_id"].nunique() == len(points) if "run_id" in points else False
    means = {o: objective_means(points, o, own_runs) for o in OBJECTIVES}
    return means, basis_of({o: m.spread for o, m in means.items()})


def _interval_all_draws(
    boots: list[tuple[str, float]], lo: float, hi: float
) -> tuple[float, float]:
    """2.5/97.5 percentiles over every draw: a draw where AR is still ahead at the end crosses
    beyond the range (+inf), one where DLM leads throughout before it (0). NaN if no draws."""
    if not boots:
        return math.nan, math.nan
    where = {"no_crossover": math.inf, "dlm_ahead_throughout": 0.0}
    values = np.array([e if s == "crossover" else where[s] for s, e in boots])
    q_lo, q_hi = np.percentile(values, [2.5, 97.5], method="inverted_cdf")
    return float(q_lo), float(q_hi)


def locate_crossover(
    points: pd.DataFrame,
    metric: str,
    *,
    n_boot: int = 200,
    seed: int = 0,
    lams: tuple[float | None, float | None] = (None, None),
) -> dict[str, object]:
    """Crossover of one (model, budget) group from its points (see ``curve_points``).
    ``lams``: AR and DLM smoothing penalties to reuse (None: chosen by GCV)."""
    if metric not in METRICS:
        raise AnalysisError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)}")
    points = points.reset_index(drop=True)
    if "seed" not in points:
        points = points.assign(seed=0)
    y = points["y"].to_numpy(float)
    ar, dlm = _fit_pair(points, y, lams)
    lo = max(ar.epoch_range[0], dlm.epoch_range[0])
    hi = min(ar.epoch_range[1], dlm.epoch_range[1])
    if not lo < hi:
        raise AnalysisError(f"{metric}: AR and DLM epoch ranges do not overlap")
    grid = np.geomspace(lo, hi, _GRID_POINTS)
    status, epoch = _crossing(grid, _dlm_minus_ar(ar, dlm, grid, metric))
    rng = np.random.default_rng(seed)
    means, basis = noise_models(points)
    identified = all(m.spread.identified for m in means.values())
    boots: list[tuple[str, float]] = []
    if n_boot and identified:
        boots = bootstrap_crossings(means, metric, (ar, dlm), grid, n_boot, rng)
    elif identified:
        basis = "no bootstrap"
    e_lo, e_hi = _interval_all_draws(boots, lo, hi)
    n_cross = sum(s == "crossover" for s, _ in boots)
    return {
        "metric": metric,
        "status": status,
        "epoch": epoch,
        "epoch_lo": e_lo,
        "epoch_hi": e_hi,
        # C_crit is the DLM's compute at the crossover (the objective that overtakes); AR's
        # compute at the same epoch is kept beside it.
        "flops": _flops_at(points, epoch, "dlm"),
        "flops_lo": _flops_at(points, e_lo, "dlm"),
        "flops_hi": _flops_at(points, e_hi, "dlm"),
        "flops_ar": _flops_at(points, epoch, "ar"),
        "p_crossover": n_cross / len(boots) if boots else math.nan,
        "interval_basis": basis,
        # False: the data do not pin the run-to-run spread; no interval, no P(crossover).
        "interval_identified": identified,
        "n_seeds": int(points.groupby("objective")["seed"].nunique().min()),
        "epoch_min": lo,
        "epoch_max": hi,
        "n_points_ar": int((points["objective"] == "ar").sum()),
        "n_points_dlm": int((points["objective"] == "dlm").sum()),
    }


def _missing(group: pd.DataFrame, metric: str) -> list[str]:
    ok = group[np.isfinite(group[metric].to_numpy(float))]
    return [o for o in OBJECTIVES if ok.loc[ok["objective"] == o, "epoch"].nunique() < 2]


def crossovers(
    evals: pd.DataFrame,
    metrics: tuple[str, ...] = ("val_loss", "mc_acc"),
    *,
    n_boot: int = 200,
    seed: int = 0,
    strict: bool = False,
) -> pd.DataFrame:
    """One row per (model_name, unique_tokens, metric). Groups lacking an objective get status
    ``insufficient_data`` (or raise with ``strict``); no usable group at all raises."""
    if evals.empty:
        raise AnalysisError("no finite evaluations: ingest completed runs of both 'ar' and 'dlm'")
    rows, gaps = [], []
    for (model, u), group in evals.groupby(GROUP, sort=True):
        for metric in metrics:
            base = {"model_name": model, "unique_tokens": int(u), "metric": metric}
            missing = _missing(group, metric)
            if missing:
                gaps.append(f"{model} U={int(u)} {metric}: missing {'/'.join(missing)}")
                rows.append(
                    base
                    | {
                        "status": "insufficient_data",
                        "note": f"need >= 2 epochs of {' and '.join(missing)}",
                    }
                )
                continue
            points, mode = curve_points(group, metric)
            rows.append(
                base
                | locate_crossover(points, metric, n_boot=n_boot, seed=seed)
                | {"mode": mode, "note": ""}
            )
    table = pd.DataFrame(rows)
    usable = table["status"] != "insufficient_data"
    if (strict and gaps) or not usable.any():
        raise AnalysisError("too few runs for a crossover: " + "; ".join(gaps))
    return table


def flag_loss_accuracy_divergence(evals: pd.DataFrame) -> pd.DataFrame:
    """Runs whose validation loss rises after its minimum while MC accuracy still improves.

    A rise counts when it exceeds twice the loss SE (0.01 without one); a gain when it exceeds
    twice the binomial SE of the accuracy at the loss minimum.
    """
    rows = []
    for run_id, run in evals.sort_values("step").groupby("run_id", sort=True):
        run = run[np.isfinite(run["val_loss"].to_numpy(float))]
        if len(run) < 3:
            continue
        i_best = int(np.argmin(run["val_loss"].to_numpy()))
        after = run.iloc[i_best + 1 :]
        best = run.iloc[i_best]
        se = best.get("val_loss_se", np.nan)
        rise_needed = 2 * se if np.isfinite(se) else 0.01
        loss_rise = float(after["val_loss"].max() - best["val_loss"]) if len(after) else 0.0
        acc = after["mc_acc"].to_numpy(float)
        acc_se = _point_se(run.iloc[[i_best]], "mc_acc")[0]
        gain_needed = 2 * acc_se if np.isfinite(acc_se) else 0.01
        acc_gain = float(np.nanmax(acc) - best["mc_acc"]) if np.isfinite(acc).any() else 0.0
        rows.append(
            {
                "run_id": run_id,
                "objective": best["objective"],
                "model_name": best["model_name"],
                "unique_tokens": best["unique_tokens"],
                "epochs": best["run_epochs"],
                "best_loss_epoch": float(best["epoch"]),
                "loss_rise": loss_rise,
                "acc_gain_after": acc_gain,
                "flagged": bool(loss_rise > rise_needed and acc_gain > gain_needed),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "objective",
            "model_name",
            "unique_tokens",
            "epochs",
            "best_loss_epoch",
            "loss_rise",
            "acc_gain_after",
            "flagged",
        ],
    )
