"""The study flows' tasks called directly (``.fn``): ingest by spec generation, skipped run
files, the summary's left-out line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analysis_fixtures import make_run

from flows.cli import format_summary
from flows.flows import StudyPaths, StudySummary, _other_spec_runs, ingest_task
from flows.spec import parse_spec, spec_hash

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
