"""ResultsStore: schema, idempotent ingest, views checked against hand-computed answers."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import make_run

from analysis.store import ResultsStore, flatten_config
from analysis.synthetic import write_synthetic_manifests

COUNTS = (
    "SELECT (SELECT count(*) FROM runs) r, (SELECT count(*) FROM metrics) m, "
    "(SELECT count(*) FROM evals) e"
)


def _ingested(study: Path) -> ResultsStore:
    store = ResultsStore(study / "results.duckdb")
    with store:
        store.ingest_runs_root(study / "runs")
    return store


def test_ingest_twice_keeps_row_counts(small_study: Path) -> None:
    store = _ingested(small_study)
    first = store.query(COUNTS).iloc[0].tolist()
    assert first == [8, 16, 16]  # 8 runs x 2 rows each
    with store:
        stats = store.ingest_runs_root(small_study / "runs")
    assert store.query(COUNTS).iloc[0].tolist() == first
    assert (stats.runs, stats.eval_rows, stats.nonfinite_eval_rows) == (8, 16, 2)


def test_rerun_replaces_its_rows_and_dedupes_a_batch(small_study: Path) -> None:
    store = _ingested(small_study)
    # The run is redone: new final loss, and a duplicated step whose last row must win.
    make_run(
        small_study,
        "ar-e4",
        "ar",
        4.0,
        0,
        [(10, 2.0, 3.0, 0.3), (20, 4.0, 2.5, 0.4), (20, 4.0, 2.4, 0.41)],
    )
    with store:
        store.ingest_run_dir(small_study / "runs" / "ar-e4")
    rows = store.query("SELECT step, val_loss FROM evals WHERE run_id = 'ar-e4' ORDER BY step")
    assert rows["val_loss"].tolist() == [3.0, 2.4]
    assert store.query(COUNTS).iloc[0].tolist() == [8, 16, 16]


def test_run_final_best_view(small_study: Path) -> None:
    store = _ingested(small_study)
    view = store.query("SELECT * FROM run_final_best").set_index("run_id")
    assert "ar-failed" not in view.index  # failed runs are out of the analysis
    row = view.loc["ar-e2"]
    assert (row.final_val_loss, row.best_val_loss, row.best_val_loss_epoch) == (2.8, 2.8, 2.0)
    assert (row.final_mc_acc, row.best_mc_acc, row.n_evals) == (0.35, 0.35, 2)
    nan_run = view.loc["dlm-nan"]  # its NaN mid evaluation is dropped, the final one kept
    assert (nan_run.n_evals, nan_run.final_val_loss) == (1, 2.6)


def test_pairs_and_measured_crossover_views(small_study: Path) -> None:
    store = _ingested(small_study)
    pairs = store.query("SELECT * FROM ar_dlm_pairs ORDER BY epochs")
    assert pairs["epochs"].tolist() == [1.0, 2.0, 4.0]  # the seed-1 DLM run has no AR partner
    assert pairs["delta_val_loss"].round(6).tolist() == [0.2, 0.1, -0.2]
    assert pairs["dlm_better_loss"].tolist() == [False, False, True]
    cross = store.query("SELECT * FROM crossover_measured").set_index("metric")
    loss, acc = cross.loc["val_loss"], cross.loc["mc_acc"]
    assert (loss.status, loss.ar_better_until_epochs, loss.dlm_better_from_epochs) == (
        "crossover",
        2.0,
        4.0,
    )
    assert acc.status == "no_crossover" and math.isnan(acc.dlm_better_from_epochs)


def test_excluded_evals_are_counted(small_study: Path) -> None:
    store = _ingested(small_study)
    excl = store.query("SELECT * FROM excluded_evals WHERE from_failed_run + nonfinite > 0")
    got = {r.run_id: (r.from_failed_run, r.nonfinite) for r in excl.itertuples()}
    assert got == {"ar-failed": (2, 0), "dlm-nan": (0, 1)}
    runs = store.query("SELECT run_id, status, failure_reason FROM runs WHERE status='failed'")
    assert runs["failure_reason"].tolist() == ["non-finite loss at step 20"]


def test_config_columns_and_schema_growth(small_study: Path) -> None:
    store = _ingested(small_study)
    # A later run brings a new config field and a float where an int column exists.
    make_run(
        small_study,
        "late",
        "dlm",
        4.0,
        2,
        [(10, 4.0, 2.6, 0.4)],
        config_extra={"extra_knob": {"depth": 3}, "seed": 2.5},
    )
    with store:
        store.ingest_run_dir(small_study / "runs" / "late")
    cols = store.query("SELECT * FROM runs ORDER BY run_id").set_index("run_id")
    assert cols.loc["late", "cfg_extra_knob_depth"] == 3
    assert cols["cfg_extra_knob_depth"].isna().sum() == 8  # NULL for the runs without it
    assert cols.loc["late", "cfg_seed"] == 2.5 and cols.loc["ar-e1", "cfg_model_depth"] == 2
    assert json.loads(cols.loc["ar-e1", "cfg_data_train_files"]) == ["a.ds", "b.ds"]
    assert len(cols.loc["ar-e1", "config_sha256"]) == 64


def test_run_without_result_is_running_from_config(tmp_path: Path) -> None:
    run = make_run(tmp_path, "inflight", "dlm", 2.0, 0, [(10, 1.0, 3.0, 0.3)], write_result=False)
    with ResultsStore(tmp_path / "r.duckdb") as store:
        store.ingest_run_dir(run)
        row = store.query("SELECT * FROM runs").iloc[0]
    assert (row.status, row.objective, row.unique_tokens, row.model_name) == (
        "running",
        "dlm",
        1000,
        "m",
    )


def test_manifest_ingest_is_idempotent(tmp_path: Path) -> None:
    paths = write_synthetic_manifests(tmp_path)
    with ResultsStore(tmp_path / "r.duckdb") as store:
        for _ in range(2):
            for path in paths:
                store.ingest_manifest(path)
        budgets = store.query("SELECT * FROM budgets ORDER BY unique_tokens")
    assert len(budgets) == len(paths)
    assert json.loads(budgets.iloc[0]["source_stats"]) == {"docs": 100_000}


def test_another_process_can_read_after_ingest(small_study: Path) -> None:
    store = _ingested(small_study)
    code = (
        "import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('select count(*) from runs').fetchone()[0])"
    )
    with store:  # the store object is alive, but holds no connection between operations
        out = subprocess.run(
            [sys.executable, "-c", code, str(store.db_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    assert out.stdout.strip() == "8"


def test_flatten_config_and_bad_dir(tmp_path: Path) -> None:
    assert flatten_config({"a": {"b": 1, "c": {"d": "x"}}, "e": [1]}) == {
        "cfg_a_b": 1,
        "cfg_a_c_d": "x",
        "cfg_e": [1],
    }
    with pytest.raises(FileNotFoundError, match="not a run dir"):
        ResultsStore(tmp_path / "r.duckdb").ingest_run_dir(tmp_path)
    assert isinstance(ResultsStore(tmp_path / "q.duckdb").query("SELECT 1 AS x"), pd.DataFrame)


def test_every_sql_example_in_the_docs_runs(small_study: Path) -> None:
    store = _ingested(small_study)
    text = (Path(__file__).parents[2] / "docs" / "sql.md").read_text()
    queries = re.findall(r"```sql\n(.*?)```", text, re.S)
    assert len(queries) == 5
    results = [store.query(q) for q in queries]
    assert results[0].set_index("metric").loc["val_loss", "status"] == "crossover"
    assert set(results[3]["run_id"]) == {"ar-failed", "dlm-nan"}


def test_eval_kind_is_ingested_and_keeps_a_branch_beside_a_mid_run_row(tmp_path: Path) -> None:
    # A branch ending at step 20 and a main-run eval at step 20 are two points, not duplicates;
    # files written before the kind column exist ingest with a NULL kind.
    branched = make_run(tmp_path, "wsd", "ar", 4.0, 0, [(10, 2.0, 3.0, 0.3)])
    frame = pd.read_parquet(branched / "evals.parquet")
    frame = pd.concat([frame] * 3, ignore_index=True)
    frame["step"] = [20, 20, 40]
    frame["kind"] = ["mid-run", "branch", "final"]
    frame["fork_step"] = [None, 17, None]
    frame["val_loss"] = [3.0, 2.8, 2.7]
    frame.to_parquet(branched / "evals.parquet", index=False)
    make_run(tmp_path, "legacy", "ar", 4.0, 0, [(10, 2.0, 3.0, 0.3)])
    store = _ingested(tmp_path)
    rows = store.query("SELECT run_id, step, kind, fork_step, val_loss FROM evals ORDER BY ALL")
    legacy, *wsd = rows.astype(object).where(rows.notna(), None).itertuples(index=False)
    assert (legacy.run_id, legacy.kind, legacy.fork_step) == ("legacy", None, None)
    assert [(r.step, r.kind, r.fork_step, r.val_loss) for r in wsd] == [
        (20, "branch", 17, 2.8),
        (20, "mid-run", None, 3.0),
        (40, "final", None, 2.7),
    ]


# ---- run files are untrusted; the database is derived data (issue 12) ------------------------

HOSTILE = "x\" VARCHAR); COPY (SELECT 42) TO '{out}'; --"


def test_hostile_config_key_is_refused_and_reported_never_executed(
    small_study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pwned.csv"
    run_dir = small_study / "runs" / "evil"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"run_id": "evil", HOSTILE.format(out=out): 1}))
    (run_dir / "result.json").write_text(json.dumps({HOSTILE.format(out=out): 1}))
    store = ResultsStore(small_study / "results.duckdb")
    with store:
        stats = store.ingest_runs_root(small_study / "runs")
    assert not out.exists()
    assert stats.runs == 8  # the other runs went in
    ((skipped_dir, reason),) = stats.skipped
    assert skipped_dir.endswith("evil") and "config.json" in reason and "not a plain" in reason
    assert "evil" not in store.query("SELECT run_id FROM runs")["run_id"].tolist()


def test_hostile_values_are_stored_as_data(small_study: Path, tmp_path: Path) -> None:
    out = tmp_path / "pwned.csv"
    value = HOSTILE.format(out=out)
    extra = {"note": value, "nested": {value: 1}}  # a hostile key below the top: kept as data
    make_run(small_study, "odd", "ar", 1, 0, [(1, 1.0, 3.0, 0.5)], config_extra=extra)
    store = _ingested(small_study)
    assert not out.exists()
    row = store.query("SELECT cfg_note, cfg_nested FROM runs WHERE run_id = 'odd'").iloc[0]
    assert row["cfg_note"] == value and json.loads(row["cfg_nested"]) == {value: 1}


def test_one_corrupt_parquet_is_skipped_and_reported_not_blocking(small_study: Path) -> None:
    runs = sorted((small_study / "runs").iterdir())
    bad = runs[0] / "evals.parquet"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: footer gone
    store = _ingested(small_study)
    with store:
        stats = store.ingest_runs_root(small_study / "runs")
    assert stats.runs == 7 and len(stats.skipped) == 1
    assert str(bad) in stats.skipped[0][1] and "Parquet" in stats.skipped[0][1]
    # Garbage past an intact footer: DuckDB refuses the batch; redone run by run.
    body = bytearray((runs[1] / "metrics.parquet").read_bytes())
    body[8:40] = b"\xff" * 32
    (runs[1] / "metrics.parquet").write_bytes(bytes(body))
    with store:
        stats = store.ingest_runs_root(small_study / "runs")
    assert stats.runs >= 6 and stats.runs + len(stats.skipped) == 8


@pytest.mark.parametrize("damage", [b"", b"not a database at all" * 100])
def test_empty_or_corrupt_database_is_rebuilt_from_run_dirs(
    small_study: Path, damage: bytes, capsys: pytest.CaptureFixture
) -> None:
    good = _ingested(small_study).query(COUNTS).iloc[0].tolist()
    db = small_study / "results.duckdb"
    db.write_bytes(damage)  # what ENOSPC mid-write left behind
    store = _ingested(small_study)
    assert store.query(COUNTS).iloc[0].tolist() == good
    assert store.rebuilt_from is not None and store.rebuilt_from.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuilt from the run directories" in err[0]


def test_analysis_uses_runs_of_the_current_spec_and_finished_runs_only(small_study: Path) -> None:
    runs = sorted((small_study / "runs").iterdir())
    for run_dir in runs:
        (run_dir / "plan.json").write_text(json.dumps({"spec_hashes": ["new"]}))
    (runs[0] / "plan.json").write_text(json.dumps({"spec_hashes": ["old"]}))
    (runs[1] / "plan.json").write_text(json.dumps({"spec_hashes": ["old", "new"]}))
    # A run whose worker died for good: no result.json, the dispatcher's failure.json.
    died = make_run(small_study, "died", "ar", 1, 0, [(1, 1.0, 3.0, 0.5)], write_result=False)
    (died / "plan.json").write_text(json.dumps({"spec_hashes": ["new"]}))
    (died / "failure.json").write_text(
        json.dumps({"status": "failed", "failure_reason": "system failure after retries"})
    )
    store = _ingested(small_study)
    store.set_current_spec("new")
    in_analysis = set(store.query("SELECT DISTINCT run_id FROM eval_points")["run_id"])
    assert runs[0].name not in in_analysis and runs[1].name in in_analysis
    assert "died" not in in_analysis
    assert store.query("SELECT run_id FROM other_spec_runs")["run_id"].tolist() == [runs[0].name]
    row = store.query("SELECT status, failure_reason FROM runs WHERE run_id = 'died'").iloc[0]
    assert (row["status"], row["failure_reason"]) == ("failed", "system failure after retries")
    store.set_current_spec(None)  # a store outside a study: every finished run
    assert runs[0].name in set(store.query("SELECT run_id FROM eval_points")["run_id"])


def test_reader_waits_for_a_writer_then_says_so_in_one_line(small_study: Path) -> None:
    from analysis.store import StoreBusy

    store = _ingested(small_study)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(store.db_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match="held by another process"):
            ResultsStore(store.db_path, lock_timeout_s=1).query("SELECT 1")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert ResultsStore(store.db_path, lock_timeout_s=60).query("SELECT 1 AS one")["one"][0] == 1
