"""Terminal summary of the crossover table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.critical_compute import law_crossover_tokens
from analysis.errors import AnalysisError
from analysis.laws import MUENNIGHOFF_2023
from analysis.store import ResultsStore
from analysis.summary import crossover_table, format_summary
from analysis.synthetic import DLM_EXAMPLE, SyntheticStudySpec, write_synthetic_study


def test_crossover_table_and_summary(tmp_path: Path) -> None:
    # 7 epoch settings x 1 seed: 3 df about the cubic for the run-to-run spread.
    epochs = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
    spec = SyntheticStudySpec(unique_tokens=(1_000_000_000,), epochs=epochs)
    write_synthetic_study(tmp_path, spec)
    db = tmp_path / "results.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(tmp_path / "runs")
        runs = store.query("SELECT * FROM runs")
    table = crossover_table(db, n_boot=20)
    assert set(table["metric"]) == {"val_loss", "mc_acc"}
    loss = table[table["metric"] == "val_loss"].iloc[0]
    # Truth: where the two generating laws cross (about 51 epochs at N = 1e8, U = 1e9).
    truth = law_crossover_tokens(MUENNIGHOFF_2023, DLM_EXAMPLE, 1e8, 1e9) / 1e9
    assert loss["status"] == "crossover" and loss["epoch_lo"] <= truth <= loss["epoch_hi"]
    text = format_summary(table, runs)
    assert text.splitlines()[0] == "runs: completed 14"
    assert "DLM overtakes AR after" in text and "FLOPs" in text
    # Every printed interval states P(crossover) and, with one seed, what it rests on.
    assert "P(crossover)" in text and "run-to-run spread from the scatter of the runs" in text


def test_summary_on_missing_objective_raises_clearly(tmp_path: Path) -> None:
    spec = SyntheticStudySpec(unique_tokens=(1_000_000_000,))
    write_synthetic_study(tmp_path, spec)
    for run in (tmp_path / "runs").iterdir():
        if '"dlm"' in (run / "config.json").read_text():
            for f in run.iterdir():
                f.unlink()
            run.rmdir()
    with ResultsStore(tmp_path / "r.duckdb") as store:
        store.ingest_runs_root(tmp_path / "runs")
    with pytest.raises(AnalysisError, match="missing dlm"):
        crossover_table(tmp_path / "r.duckdb")
    assert "no usable runs" in format_summary(pd.DataFrame())
