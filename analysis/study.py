"""One call that runs every analysis on a store: what the report and the summary show.

Each part that cannot be computed (too few runs, one objective only) records the reason as a
message instead of raising, so a partial study still gets a report that says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.crossover import (
    PowerLawFit,
    critical_compute_from_laws,
    critical_compute_measured,
    crossovers,
    flag_loss_accuracy_divergence,
)
from analysis.errors import AnalysisError
from analysis.fits import LawFit, fit_data_constrained_law
from analysis.store import ResultsStore


@dataclass
class StudyAnalysis:
    """Everything derived from one store; ``notes`` says what could not be computed and why."""

    runs: pd.DataFrame
    evals: pd.DataFrame
    excluded: pd.DataFrame
    crossovers: pd.DataFrame = field(default_factory=pd.DataFrame)
    law_fits: dict[str, LawFit] = field(default_factory=dict)
    critical_compute: list[PowerLawFit] = field(default_factory=list)
    law_crossovers: pd.DataFrame = field(default_factory=pd.DataFrame)
    divergence: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.runs.empty


def law_points(evals: pd.DataFrame, objective: str, *, drop_overfit: bool = True) -> pd.DataFrame:
    """Law-fit input for one objective: finite evaluations as (N, D=tokens_seen, U, loss).

    Only evaluations after some training count (tokens_seen > 0).

    The law only ever decreases in D, so with ``drop_overfit`` the evaluations after a run's
    best loss that are worse than it by more than 2 standard errors (0.01 without one) are left
    out: overfitting is reported by the curves and the divergence flags, not fitted.
    """
    rows = evals[evals["objective"] == objective].sort_values(["run_id", "step"])
    # The initial evaluation (D = 0) is no point of the law: B / D'^beta is infinite there.
    rows = rows[rows["tokens_seen"].astype(float) > 0]
    if drop_overfit and not rows.empty:
        loss = rows["val_loss"].astype(float)
        best = loss.groupby(rows["run_id"]).transform("min")
        se = rows.get("val_loss_se", pd.Series(np.nan, index=rows.index)).astype(float)
        # Position of each run's minimum: rows after it that are clearly worse are dropped.
        after_best = loss.groupby(rows["run_id"]).cumcount() > loss.groupby(
            rows["run_id"]
        ).transform(lambda v: int(np.argmin(v.to_numpy())))
        worse = loss > best + np.where(np.isfinite(se), 2 * se, 0.01)
        rows = rows[~(after_best & worse)]
    return pd.DataFrame(
        {
            "run_id": rows["run_id"],
            "n_params": rows["n_params"].astype(float),
            "tokens": rows["tokens_seen"].astype(float),
            "unique_tokens": rows["unique_tokens"].astype(float),
            "loss": rows["val_loss"].astype(float),
        }
    )


def _as_store(db: str | Path | ResultsStore) -> ResultsStore:
    return db if isinstance(db, ResultsStore) else ResultsStore(db)


def analyze_study(
    db: str | Path | ResultsStore, *, n_boot: int = 200, seed: int = 0
) -> StudyAnalysis:
    """Crossovers, law fits per objective, C_crit(U) (measured and from the laws), warnings."""
    store = _as_store(db)
    result = StudyAnalysis(
        runs=store.query(
            "SELECT * FROM current_runs ORDER BY objective, model_name, unique_tokens, epochs, seed"
        ),
        evals=store.query("SELECT * FROM eval_points ORDER BY run_id, step"),
        excluded=store.query("SELECT * FROM excluded_evals WHERE from_failed_run + nonfinite > 0"),
    )
    n_other = int(store.query("SELECT count(*) AS n FROM other_spec_runs")["n"].iloc[0])
    if n_other:
        result.notes.append(
            f"{n_other} runs of an earlier version of this study's spec left out (kept on disk)"
        )
    if result.empty:
        result.notes.append("no runs ingested")
        return result
    if result.evals.empty:
        result.notes.append("no finite evaluations in any completed run")
        return result
    _crossover_part(result, n_boot, seed)
    _law_part(result, n_boot, seed)
    result.divergence = flag_loss_accuracy_divergence(result.evals)
    return result


def _crossover_part(result: StudyAnalysis, n_boot: int, seed: int) -> None:
    try:
        result.crossovers = crossovers(result.evals, n_boot=n_boot, seed=seed)
    except AnalysisError as err:
        result.notes.append(f"crossover: {err}")
        return
    for (model, metric), _ in result.crossovers.groupby(["model_name", "metric"]):
        try:
            result.critical_compute.append(
                critical_compute_measured(result.crossovers, model, metric, seed=seed)
            )
        except AnalysisError as err:
            result.notes.append(f"C_crit(U) {model} {metric}: {err}")


def _law_part(result: StudyAnalysis, n_boot: int, seed: int) -> None:
    for objective in ("ar", "dlm"):
        points = law_points(result.evals, objective)
        if points.empty:
            result.notes.append(f"law fit for {objective!r}: no runs of this objective")
            continue
        n_all = int((result.evals["objective"] == objective).sum())
        if len(points) < n_all:
            result.notes.append(
                f"law fit for {objective!r}: {n_all - len(points)} of {n_all} evaluations left "
                "out (after the run's best loss and clearly worse: overfitting)"
            )
        try:
            result.law_fits[objective] = fit_data_constrained_law(
                points, objective, n_boot=n_boot, seed=seed
            )
        except AnalysisError as err:
            result.notes.append(str(err))
    if len(result.law_fits) < 2:
        return
    tables = []
    for n_params, rows in result.evals.groupby("n_params"):
        budgets = sorted(rows["unique_tokens"].unique().tolist())
        try:
            table, fit = critical_compute_from_laws(
                result.law_fits["ar"],
                result.law_fits["dlm"],
                float(n_params),
                budgets,
                measured_max_epochs=float(np.nanmax(rows["epoch"])),
            )
        except AnalysisError as err:
            result.notes.append(f"C_crit(U) from laws, N={n_params:.3g}: {err}")
            continue
        tables.append(table.assign(n_params=n_params))
        result.critical_compute.append(replace(fit, source=f"laws val_loss N={n_params:.3g}"))
    if tables:
        result.law_crossovers = pd.concat(tables, ignore_index=True)
