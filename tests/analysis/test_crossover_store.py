"""The DuckDB ``crossovers`` table is the one copy of the crossover: terminal, report and SQL
read the same rows, computed once per set of evaluations and bootstrap settings."""

from __future__ import annotations

import html
import math
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analysis.crossover import crossovers
from analysis.crossover_store import N_BOOT, current_crossovers, evals_fingerprint
from analysis.errors import AnalysisError
from analysis.report import write_report
from analysis.store import ResultsStore
from analysis.summary import crossover_table, format_summary, interval_text
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study


@pytest.fixture
def study_db(tmp_path: Path) -> Path:
    write_synthetic_study(tmp_path, SyntheticStudySpec(unique_tokens=(1_000_000_000,)))
    db = tmp_path / "results.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(tmp_path / "runs")
    return db


def test_table_is_stored_with_settings_and_matches_a_fresh_computation(study_db: Path) -> None:
    store = ResultsStore(study_db)
    table = current_crossovers(store, n_boot=30, seed=3)
    evals = store.query("SELECT * FROM eval_points ORDER BY run_id, step")
    fresh = crossovers(evals, n_boot=30, seed=3)
    assert table[["n_boot", "bootstrap_seed"]].drop_duplicates().values.tolist() == [[30, 3]]
    assert (table["evals_sha256"] == evals_fingerprint(evals)).all()
    for col in ("status", "epoch", "epoch_lo", "epoch_hi", "p_crossover", "flops"):
        pd.testing.assert_series_equal(table[col], fresh[col], check_dtype=False)
    with duckdb.connect(str(study_db), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM crossovers WHERE n_boot = 30").fetchone()[0]
    assert n == len(fresh)  # a second call neither recomputes nor duplicates rows
    again = current_crossovers(store, n_boot=30, seed=3)
    pd.testing.assert_frame_equal(again, table)


def test_changed_settings_or_evaluations_recompute(study_db: Path, tmp_path: Path) -> None:
    store = ResultsStore(study_db)
    first = current_crossovers(store, n_boot=20)
    assert set(current_crossovers(store, n_boot=25)["n_boot"]) == {25}
    # One run fewer: new evaluations, a new fingerprint, a recomputed table.
    run = sorted((tmp_path / "runs").iterdir())[-1]
    run_id = run.name  # synthetic run dirs are named by their run_id
    shutil.rmtree(run)
    with duckdb.connect(str(study_db)) as con:  # as a user deleting a bad run would
        for table in ("evals", "metrics", "runs"):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    second = current_crossovers(store, n_boot=20)
    assert second["evals_sha256"].iloc[0] != first["evals_sha256"].iloc[0]
    assert len(store.query("SELECT * FROM crossovers")) == len(second)


def test_unusable_study_drops_the_stale_table(study_db: Path) -> None:
    store = ResultsStore(study_db)
    current_crossovers(store, n_boot=10)
    empty = pd.DataFrame(columns=["run_id", "step", "objective", "model_name", "unique_tokens"])
    with pytest.raises(AnalysisError, match="no finite evaluations"):
        current_crossovers(store, empty, n_boot=10)
    tables = store.query("SELECT table_name FROM information_schema.tables")["table_name"]
    assert "crossovers" not in set(tables)


def test_terminal_and_report_show_the_stored_rows(study_db: Path, tmp_path: Path) -> None:
    report = write_report(study_db, tmp_path / "report", png=False).read_text()
    stored = ResultsStore(study_db).query("SELECT * FROM crossovers")
    assert set(stored["n_boot"]) == {N_BOOT}  # the report used the shared default
    terminal = crossover_table(study_db)  # no recomputation: same settings, same evaluations
    pd.testing.assert_frame_equal(terminal, stored)
    text = format_summary(terminal)
    for _, row in stored[stored["status"] != "insufficient_data"].iterrows():
        interval = interval_text(row)
        if row["interval_identified"]:
            assert f"{N_BOOT} draws" in interval
        else:  # 5 settings x 1 seed: the run-to-run spread is not identified
            assert interval.startswith("95% interval not identified: one seed")
            assert "draws" not in interval and math.isnan(row["epoch_lo"])
        assert interval in text and html.escape(interval) in report


def test_a_table_of_an_earlier_interval_method_is_recomputed(
    study_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key names the interval method: a table stored by another method is not shown."""
    import analysis.crossover_store as crossover_store

    store = ResultsStore(study_db)
    first = current_crossovers(store, n_boot=10)
    monkeypatch.setattr(crossover_store, "INTERVAL_METHOD", "an earlier method")
    second = current_crossovers(store, n_boot=10)
    assert second["evals_sha256"].iloc[0] != first["evals_sha256"].iloc[0]
    assert len(store.query("SELECT * FROM crossovers")) == len(first)
