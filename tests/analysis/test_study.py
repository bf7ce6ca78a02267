"""Study-level analysis: law-fit inputs and the notes that say what could not be computed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from analysis_fixtures import build_small_study

from analysis.store import ResultsStore
from analysis.study import analyze_study, law_points, select_law_points


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


def test_law_points_are_final_losses_of_completed_runs() -> None:
    evals = pd.concat([_evals([7.6, 3.0, 2.5, 2.6], "a"), _evals([7.0, 2.9, 2.8], "b")])
    evals.loc[evals["step"] == 1, "tokens_seen"] = 0  # the eval of the untrained model
    selection = select_law_points(evals, "ar", completed={"a"})
    assert selection.points["loss"].tolist() == [2.6]  # final loss, overfit or not
    assert selection.excluded == {
        "initial evaluations (no training)": 2,
        "evaluations of unfinished runs": 2,
        "mid-run evaluations (learning rate not annealed)": 2,
    }
    assert "excluded 2 initial" in selection.describe("ar")
    assert select_law_points(evals, "dlm").points.empty


def test_law_points_take_annealed_branches_when_evals_have_a_kind() -> None:
    evals = _evals([3.0, 2.5, 2.4, 2.3]).assign(kind=["mid-run", "branch", "mid-run", "final"])
    points = select_law_points(evals, "ar").points
    assert points["loss"].tolist() == [2.5, 2.3] and points["tokens"].tolist() == [2000, 4000]
    assert law_points(evals.drop(columns="kind"), "ar")["loss"].tolist() == [2.3]


def test_analyze_small_study_notes_what_is_missing(tmp_path: Path) -> None:
    study = build_small_study(tmp_path / "s")
    with ResultsStore(study / "r.duckdb") as store:
        store.ingest_runs_root(study / "runs")
    analysis = analyze_study(study / "r.duckdb", n_boot=5)
    assert len(analysis.runs) == 8 and not analysis.crossovers.empty
    # One size and budget: no law parameter is identified (said so, no numbers), and one budget
    # cannot give C_crit(U) (a note, not an exception).
    assert set(analysis.law_fits) == {"ar", "dlm"}
    assert all(fit.params is None for fit in analysis.law_fits.values())
    assert all("1 model size(s)" in fit.notes[0] for fit in analysis.law_fits.values())
    joined = " | ".join(analysis.notes)
    assert "C_crit(U) m val_loss" in joined and ">= 2 budgets" in joined


def test_analyze_empty_store(tmp_path: Path) -> None:
    analysis = analyze_study(tmp_path / "empty.duckdb")
    assert analysis.empty and analysis.notes == ["no runs ingested"]
