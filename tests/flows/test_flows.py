"""The study flows' tasks called directly (``.fn``): ingest by spec generation, skipped run
files, the summary's left-out line, a full disk (a real small tmpfs) during ingest and training."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import make_run
from flows_fixtures import fill_disk

from flows.cli import format_summary
from flows.flows import StudyPaths, StudySummary, _other_spec_runs, ingest_task
from flows.spec import parse_spec, spec_hash

NO_SPACE_TEXT = "No space left on device"
SPEC = {"name": "gen", "budgets": {"sizes": [1000]}, "models": ["tiny"], "epochs": [1]}


def test_edited_spec_leaves_the_older_generation_out_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old, new = parse_spec(SPEC), parse_spec({**SPEC, "optim": {"lr": 2e-3}})
    paths = StudyPaths.of(new, tmp_path)
    for i, spec in enumerate([old, old, new, new]):
        objective = "ar" if i % 2 == 0 else "dlm"
        run = make_run(paths.study_dir, f"r{i}", objective, 1, 0, [(1, 1.0, 3.0 - i / 10, 0.5)])
        (run / "plan.json").write_text(json.dumps({"spec_hashes": [spec_hash(spec)]}))
    broken = paths.runs_root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{truncated")

    assert ingest_task.fn(paths, None, spec_hash(new)) == 4
    assert "ingest: skipped broken:" in capsys.readouterr().err
    assert _other_spec_runs(paths) == 2
    from analysis.store import ResultsStore

    analysed = ResultsStore(paths.db_path).query("SELECT DISTINCT run_id FROM eval_points")
    assert sorted(analysed["run_id"]) == ["r2", "r3"]  # one AR/DLM pair, not two
    summary = StudySummary("gen", str(paths.db_path), None, 2, 0, 2, 0, other_spec_runs=2)
    assert "left out: 2 runs of an earlier version" in format_summary(summary.to_dict())


def test_report_marks_the_current_grid_runs_even_without_a_sweep(
    smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from flows.flows import _record_plans
    from flows.grid import expand_grid

    _, manifests = smoke_budgets
    paths = StudyPaths.of(smoke_spec, tmp_path)
    runs = expand_grid(smoke_spec, manifests)
    (paths.runs_root / runs[0].run_id).mkdir(parents=True)  # a run dir from before plan.json
    _record_plans(smoke_spec, manifests, paths)
    plan = json.loads((paths.runs_root / runs[0].run_id / "plan.json").read_text())
    assert plan == {"spec_hashes": [spec_hash(smoke_spec)]}
    assert not (paths.runs_root / runs[1].run_id).exists()  # never creates run dirs


def test_full_disk_during_ingest_is_one_line_and_loses_nothing(small_tmpfs: Path) -> None:
    """A real full disk (tmpfs): ingest says where and how much is free in one line, the
    database keeps what it held (not bricked), and after space is freed the rerun ingests the
    rest: the same rows as one ingest on a roomy disk, none twice."""
    from analysis.store import ResultsStore
    from analysis.synthetic import SyntheticStudySpec, write_synthetic_study
    from flows.cli import disk_full_message

    paths = StudyPaths.of(parse_spec(SPEC), small_tmpfs / "home")
    first = SyntheticStudySpec(unique_tokens=(1_000_000_000,))
    write_synthetic_study(paths.study_dir, first)
    assert ingest_task.fn(paths, None) == 10
    write_synthetic_study(paths.study_dir, SyntheticStudySpec(unique_tokens=(300_000_000,)))
    ballast = fill_disk(small_tmpfs)

    with pytest.raises(OSError) as full:
        ingest_task.fn(paths, None)
    assert full.value.errno == errno.ENOSPC
    (line,) = disk_full_message(full.value).splitlines()
    assert str(paths.study_dir) in line and "(0.0 MiB free)" in line and "rerun" in line
    held = ResultsStore(paths.db_path).query("SELECT count(*) AS n FROM runs")["n"][0]
    assert held == 10  # the database opens and holds what it held before

    ballast.unlink()
    assert ingest_task.fn(paths, None) == 20
    roomy = small_tmpfs.parent / "roomy.duckdb"
    with ResultsStore(roomy) as store:
        store.ingest_runs_root(paths.runs_root)
    # runs.ingested_at is when each row was written; every other value must be the same.
    for table in ("runs EXCLUDE (ingested_at)", "evals", "metrics"):
        name, _, exclude = table.partition(" ")
        query = f"SELECT * {exclude} FROM {name} ORDER BY ALL"
        got, want = ResultsStore(paths.db_path).query(query), ResultsStore(roomy).query(query)
        pd.testing.assert_frame_equal(got, want)


def test_full_disk_mid_run_names_the_run_dir_and_the_rerun_resumes(
    small_tmpfs: Path, tmp_path: Path
) -> None:
    """Training on a real full disk (tmpfs): the first checkpoint fits, the second does not.
    The sweep's failure reason names the run dir and the free space; after space is freed the
    rerun resumes from the checkpoint that fitted and ends with an uninterrupted run's rows."""
    import pyarrow.parquet as pq
    from trainer_fixtures import tiny_config, tiny_data

    from flows.flows import _explain_disk_full
    from flows.run_task import RunOutcome
    from training_core import run_io
    from training_core.checkpoint import checkpoint_step
    from training_core.trainer import train_run

    cfg = tiny_config(tiny_data(tmp_path), checkpoint_every_steps=5)
    reference = tmp_path / "reference"
    train_run(cfg, reference)
    ckpt_bytes = sum(f.stat().st_size for f in (reference / "ckpt").iterdir())
    runs_root = small_tmpfs / "runs"
    run_dir = runs_root / cfg.run_id
    run_dir.mkdir(parents=True)
    ballast = fill_disk(small_tmpfs, leave_bytes=int(1.5 * ckpt_bytes))  # one checkpoint fits

    with pytest.raises(Exception, match=NO_SPACE_TEXT) as full:
        train_run(cfg, run_dir)
    reason = f"{type(full.value).__name__}: {full.value}"  # what the sweep records
    explained = _explain_disk_full(RunOutcome(cfg.run_id, "ar", "failed", reason), runs_root)
    (line,) = explained.reason.splitlines()
    assert str(run_dir) in line and "MiB free" in line and NO_SPACE_TEXT in line

    assert checkpoint_step(run_dir) == 5  # what the rerun resumes from (flows.dispatch too)
    ballast.unlink()
    assert train_run(cfg, run_dir).completed
    timing = ["tokens_per_s"]
    for name in ("metrics.parquet", "evals.parquet"):
        got = pq.read_table(run_dir / name).to_pandas().drop(columns=timing, errors="ignore")
        want = pq.read_table(reference / name).to_pandas().drop(columns=timing, errors="ignore")
        pd.testing.assert_frame_equal(got, want)
    assert run_io.read_result(run_dir).completed
