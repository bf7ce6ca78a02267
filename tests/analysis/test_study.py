"""Study-level analysis: law-fit inputs and the notes that say what could not be computed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from analysis_fixtures import build_small_study

from analysis.store import ResultsStore
from analysis.study import analyze_study, law_points


def _evals(losses: list[float], run_id: str = "r") -> pd.DataFrame:
    n = len(losses)
    return pd.DataFrame(
        {
            "run_id": run_id,
            "objective": "ar",
            "step": range(1, n + 1),
            "n_params": 100,
            "tokens_seen": [1000 * (i + 1) for i in range(n)],
            "unique_tokens": 1000,
            "val_loss": losses,
            "val_loss_se": 0.01,
        }
    )


def test_law_points_leave_out_clear_overfitting_only() -> None:
    rising = law_points(_evals([3.0, 2.5, 2.4, 2.6, 2.9]), "ar")
    assert rising["loss"].tolist() == [3.0, 2.5, 2.4]
    noisy = law_points(_evals([3.0, 2.40, 2.41, 2.415], "s"), "ar")  # within 2 SE: kept
    assert len(noisy) == 4 and noisy["tokens"].tolist() == [1000, 2000, 3000, 4000]
    assert len(law_points(_evals([3.0, 2.5, 2.4, 2.6, 2.9]), "ar", drop_overfit=False)) == 5
    assert law_points(_evals([3.0]), "dlm").empty


def test_law_points_leave_out_the_initial_evaluation() -> None:
    evals = _evals([7.6, 3.0, 2.5])
    evals.loc[0, ["step", "tokens_seen"]] = 0  # the eval of the untrained model
    points = law_points(evals, "ar")
    assert points["tokens"].min() > 0 and points["loss"].tolist() == [3.0, 2.5]


def test_analyze_small_study_notes_what_is_missing(tmp_path: Path) -> None:
    study = build_small_study(tmp_path / "s")
    with ResultsStore(study / "r.duckdb") as store:
        store.ingest_runs_root(study / "runs")
    analysis = analyze_study(study / "r.duckdb", n_boot=5)
    assert len(analysis.runs) == 8 and not analysis.crossovers.empty
    # Six runs per objective at one size and budget, none evaluated twice in the first epoch:
    # joint law fits (said so), and one budget cannot give C_crit(U) (a note, not an exception).
    assert set(analysis.law_fits) == {"ar", "dlm"}
    assert all("joint fit" in fit.notes[0] for fit in analysis.law_fits.values())
    joined = " | ".join(analysis.notes)
    assert "C_crit(U) m val_loss" in joined and ">= 2 budgets" in joined


def test_analyze_empty_store(tmp_path: Path) -> None:
    analysis = analyze_study(tmp_path / "empty.duckdb")
    assert analysis.empty and analysis.notes == ["no runs ingested"]
