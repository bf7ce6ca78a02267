"""One call that runs every analysis on a store: what the report and the summary show.

Each part that cannot be computed (too few runs, one objective only) records the reason as a
message instead of raising, so a partial study still gets a report that says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.critical_compute import (
    PowerLawFit,
    critical_compute_from_laws,
    critical_compute_measured,
)
from analysis.crossover import flag_loss_accuracy_divergence
from analysis.crossover_store import BOOT_SEED, N_BOOT, current_crossovers
from analysis.errors import AnalysisError
from analysis.fits import LawFit, fit_data_constrained_law, fit_table
from analysis.frontier_table import MeasuredRange, frontier_critical_compute
from analysis.planner_laws import draws_table
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
    frontier: pd.DataFrame = field(default_factory=pd.DataFrame)
    divergence: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.runs.empty


FIT_KINDS = ("final", "branch")  # eval ``kind`` values that are law-fit points (annealed)


@dataclass(frozen=True)
class LawPointSelection:
    """Law-fit input for one objective and what was left out, by reason (counts of evals)."""

    points: pd.DataFrame
    excluded: dict[str, int]

    def describe(self, objective: str) -> str:
        parts = [f"{n} {reason}" for reason, n in self.excluded.items() if n]
        kept = f"law fit for {objective!r}: {len(self.points)} points (final losses of runs)"
        return kept + (f"; excluded {', '.join(parts)}" if parts else "")


def select_law_points(
    evals: pd.DataFrame, objective: str, completed: set[str] | None = None
) -> LawPointSelection:
    """Final loss of each completed run, plus evaluations of kind 'final'/'branch' (annealed
    checkpoints) when the evals carry a ``kind`` column. Other mid-run evaluations sit above a
    run trained to that many tokens (its learning rate has not decayed), so they draw curves
    but never enter the law fit. ``completed``: run ids whose run finished (None = all)."""
    rows = evals[evals["objective"] == objective].sort_values(["run_id", "step"])
    trained = rows["tokens_seen"].astype(float) > 0
    done = rows["run_id"].isin(completed) if completed is not None else trained | True
    last = rows.groupby("run_id")["step"].transform("max") == rows["step"]
    keep = trained & done & last
    if "kind" in rows.columns:
        keep |= trained & rows["kind"].isin(FIT_KINDS)
    excluded = {
        "initial evaluations (no training)": int((~trained).sum()),
        "evaluations of unfinished runs": int((trained & ~done & ~keep).sum()),
        "mid-run evaluations (learning rate not annealed)": int((trained & done & ~keep).sum()),
    }
    rows = rows[keep]
    points = pd.DataFrame(
        {
            "run_id": rows["run_id"],
            "n_params": rows["n_params"].astype(float),
            "tokens": rows["tokens_seen"].astype(float),
            "unique_tokens": rows["unique_tokens"].astype(float),
            "loss": rows["val_loss"].astype(float),
        }
    ).reset_index(drop=True)
    return LawPointSelection(points, excluded)


def law_points(evals: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The points of ``select_law_points`` (every run counted as completed)."""
    return select_law_points(evals, objective).points


def _as_store(db: str | Path | ResultsStore) -> ResultsStore:
    return db if isinstance(db, ResultsStore) else ResultsStore(db)


def analyze_study(
    db: str | Path | ResultsStore, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED
) -> StudyAnalysis:
    """Crossovers (the store's ``crossovers`` table: see analysis.crossover_store), law fits per
    objective, C_crit(U) (measured and from the laws), warnings."""
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
    _crossover_part(store, result, n_boot, seed)
    _law_part(result, n_boot, seed)
    if result.law_fits:
        store.replace_derived_table("law_fits", fit_table(result.law_fits))
        store.replace_derived_table("law_fit_draws", draws_table(result.law_fits))  # planner
    _frontier_part(result)
    store.replace_derived_table("frontier_crossovers", result.frontier)
    result.divergence = flag_loss_accuracy_divergence(result.evals)
    return result


def _crossover_part(store: ResultsStore, result: StudyAnalysis, n_boot: int, seed: int) -> None:
    try:
        result.crossovers = current_crossovers(store, result.evals, n_boot=n_boot, seed=seed)
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
    completed = set(result.runs.loc[result.runs["status"] == "completed", "run_id"])
    for objective in ("ar", "dlm"):
        selection = select_law_points(result.evals, objective, completed)
        if selection.points.empty:
            result.notes.append(f"law fit for {objective!r}: no completed runs of this objective")
            continue
        result.notes.append(selection.describe(objective))
        try:
            fit = fit_data_constrained_law(selection.points, objective, n_boot=n_boot, seed=seed)
        except AnalysisError as err:
            result.notes.append(str(err))
            continue
        result.law_fits[objective] = fit
        identified = [n for n, e in fit.estimates.items() if e.identified]
        result.notes.append(
            f"law fit for {objective!r}: this design identifies "
            f"{', '.join(identified) if identified else 'no law parameter'}"
        )
    usable = [f for f in result.law_fits.values() if f.params is not None]
    if len(usable) < 2 or not all(f.identified("rd_star") for f in usable):
        if result.law_fits:
            result.notes.append(
                "C_crit(U) from laws: needs both objectives' laws with R_D* identified"
            )
        return
    tables = []
    for n_params, rows in result.evals.groupby("n_params"):
        budgets = sorted(rows["unique_tokens"].unique().tolist())
        dlm_runs = result.runs[
            (result.runs["objective"] == "dlm") & (result.runs["n_params"] == n_params)
        ]
        fpt = dlm_runs.get("flops_per_token", pd.Series(dtype=float)).median()
        table, fits = critical_compute_from_laws(
            result.law_fits["ar"],
            result.law_fits["dlm"],
            float(n_params),
            budgets,
            flops_per_token=float(fpt) if np.isfinite(fpt) else None,
            measured_max_epochs=float(np.nanmax(rows["epoch"])),
        )
        tables.append(table.assign(n_params=n_params))
        for fit in fits:
            result.critical_compute.append(replace(fit, source=f"{fit.source} N={n_params:.3g}"))
    if tables:
        result.law_crossovers = pd.concat(tables, ignore_index=True)


def _flops_per_param(runs: pd.DataFrame, objective: str) -> float | None:
    rows = runs[(runs["objective"] == objective) & (runs["status"] == "completed")]
    if "flops_per_token" not in rows or rows.empty:
        return None
    ratio = (rows["flops_per_token"].astype(float) / rows["n_params"].astype(float)).median()
    return float(ratio) if np.isfinite(ratio) and ratio > 0 else None


def _frontier_part(result: StudyAnalysis) -> None:
    """C_crit on the compute-optimal frontier per budget (``analysis.frontier``), each
    objective's compute at its runs' own FLOPs per token per parameter."""
    k = {o: _flops_per_param(result.runs, o) for o in ("ar", "dlm")}
    if None in k.values():
        result.notes.append("frontier C_crit: FLOPs per token unknown for a run, 6 N D used")
    ev = result.evals[result.evals["epoch"] > 0]
    measured = MeasuredRange(
        (float(ev["n_params"].min()), float(ev["n_params"].max())),
        (float(ev["epoch"].min()), float(ev["epoch"].max())),
        (float(ev["flops"][ev["flops"] > 0].min()), float(ev["flops"].max())),
    )
    frontier = frontier_critical_compute(
        result.law_fits.get("ar"),
        result.law_fits.get("dlm"),
        sorted(result.evals["unique_tokens"].astype(float).unique()),
        flops_per_param=(k["ar"] or 6.0, k["dlm"] or 6.0),
        measured=measured,
    )
    result.frontier = frontier.table
    result.critical_compute.extend(frontier.power_fits)
    statuses = sorted(set(frontier.table["status"]))
    if any(s.startswith("not identified") for s in statuses):
        result.notes.append(f"C_crit on the compute-optimal frontier: {'; '.join(statuses)}")
