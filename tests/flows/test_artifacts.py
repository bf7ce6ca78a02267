"""The Prefect UI's view of a study: row builders (pure), the progress line in the flow log, and
the artifacts and named task runs read back through the Prefect client of a real test server."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from artifact_checks import check_study_artifacts

from analysis.store import ResultsStore
from analysis.summary import crossover_table
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study
from flows.artifacts import (
    LoggedProgress,
    artifact_key,
    crossover_rows,
    publish_results_task,
    publish_runs_task,
    results_markdown,
    run_rows,
)
from flows.dispatch import GridProgress, read_status
from flows.run_task import RunOutcome


def test_artifact_key_is_what_prefect_accepts() -> None:
    assert artifact_key("crossovers", "Paper_Full v2") == "crossovers-paper-full-v2"
    assert artifact_key("runs", "demo") == "runs-demo"


def test_crossover_rows_spell_out_numbers_and_open_edges() -> None:
    table = pd.DataFrame(
        [
            {"model_name": "xs", "unique_tokens": 26620, "metric": "val_loss",
             "status": "crossover", "epoch": 19.31, "epoch_lo": 18.1, "epoch_hi": 20.9,
             "epoch_min": 1.0, "epoch_max": 90.0, "p_crossover": 1.0, "flops": 1.79e12,
             "flops_lo": 1.68e12, "flops_hi": 1.94e12, "n_boot": 200,
             "interval_basis": "evaluation noise only", "note": ""},
            {"model_name": "xs", "unique_tokens": 100014, "metric": "mc_acc",
             "status": "no_crossover", "epoch": math.nan, "epoch_lo": 0.0,
             "epoch_hi": math.inf, "epoch_min": 1.0, "epoch_max": 24.0, "p_crossover": 0.4,
             "flops": math.nan, "flops_lo": math.nan, "flops_hi": math.nan, "n_boot": 200,
             "interval_basis": "seeds resampled", "note": ""},
        ]
    )  # fmt: skip
    first, second = crossover_rows(table)
    assert first["DLM overtakes AR at epoch"] == "19.3"
    assert first["95% interval (epochs)"] == "[18.1, 20.9]"
    assert first["P(crossover)"] == "1.00" and first["bootstrap draws"] == 200
    assert first["DLM FLOPs at crossover"] == "1.79e+12"
    assert second["DLM overtakes AR at epoch"] is None
    assert second["95% interval (epochs)"] == "[before 1, beyond 24]"
    assert second["FLOPs interval"] is None
    open_flops = crossover_rows(table.assign(flops_lo=1e12, flops_hi=math.inf))[1]
    assert open_flops["FLOPs interval"] == "[1e+12, beyond the range]"
    json.dumps([first, second], allow_nan=False)  # what Prefect stores: no NaN, no inf


def test_run_rows_carry_status_reason_and_throughput() -> None:
    outcomes = [
        RunOutcome("a1", "ar/xs/25K/ep4/s0", "completed", tokens_seen=1000, wall_s=2.0),
        RunOutcome("d1", "dlm/xs/25K/ep4/s0", "failed", reason="x" * 1000),
        RunOutcome("a2", "ar/xs/25K/ep8/s0", "skipped"),
    ]
    results = {
        "a1": {"tokens_per_s": 512.34, "tokens_seen": 1000, "wall_s": 2.0, "final_val_loss": 5.1},
        "d1": {"status": "failed", "failure_reason": "x" * 1000},
        "a2": {"tokens_per_s": 498.0, "tokens_seen": 2000, "wall_s": 4.1},
    }
    rows = run_rows(outcomes, results)
    assert [r["status"] for r in rows] == ["completed", "failed", "already done"]
    assert rows[0]["tokens/s"] == "512.3" and rows[0]["final val loss"] == "5.1"
    assert len(rows[1]["failure reason"]) == 300 and rows[1]["tokens/s"] is None
    assert rows[2]["tokens"] == 2000  # a skipped run's numbers come from its result.json
    assert run_rows(outcomes[:1], {})[0]["tokens"] == 1000


def test_results_markdown_names_report_and_database(tmp_path: Path) -> None:
    text = results_markdown("demo", tmp_path / "r.duckdb", tmp_path / "report.html", {"failed": 1})
    assert f"({(tmp_path / 'report.html').as_uri()})" in text
    assert f"`{tmp_path / 'r.duckdb'}`" in text and "runs: 1 failed" in text
    assert "report: not written" in results_markdown("demo", tmp_path / "r.duckdb", None, {})


def test_progress_line_is_logged_first_periodically_and_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test-progress")
    logged = LoggedProgress(logger, every_s=3600.0)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        logged(GridProgress(total=3, done=1))
        logged(GridProgress(total=3, done=2))  # within every_s: not logged
        logged(GridProgress(total=3, done=2, failed=1))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("runs 1/3 · 1 done") and lines[1].startswith("runs 3/3 · 2 done")


def test_flow_parameters_have_descriptions_for_the_run_form() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.flows import budgets_flow, report_flow, study_flow, sweep_flow

    for flow_obj in (study_flow, sweep_flow, budgets_flow, report_flow):
        props = parameter_schema(flow_obj.fn).model_dump()["properties"]
        missing = [name for name, p in props.items() if not p.get("description")]
        assert not missing, f"{flow_obj.name}: no description for {missing}"


@pytest.fixture(scope="module")
def synthetic_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RunOutcome]]:
    """(DuckDB path, outcomes) of a synthetic study with one failed run, as a sweep leaves it."""
    root = tmp_path_factory.mktemp("artifacts-study")
    write_synthetic_study(root, SyntheticStudySpec(unique_tokens=(1_000_000_000,), n_failed=1))
    db = root / "results.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(root / "runs")
    outcomes = []
    for run_dir in sorted((root / "runs").iterdir()):
        cfg = json.loads((run_dir / "config.json").read_text())
        result = read_status(run_dir) or {}
        label = f"{cfg['objective']['kind']}/ep{cfg['epochs']:g}/s{cfg['seed']}"
        outcomes.append(
            RunOutcome(run_dir.name, label, result["status"], result.get("failure_reason"))
        )
    return db, outcomes


@pytest.fixture(scope="module")
def test_server() -> Iterator[None]:
    """One Prefect test server (its own temporary database) for this module's flows: a start
    costs seconds. Each test reads back only its own flow run's or artifact key's records."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_artifacts_and_named_task_runs_on_a_test_server(
    synthetic_study: tuple[Path, list[RunOutcome]], test_server: None
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    db, outcomes = synthetic_study
    report = db.parent / "report.html"
    report.write_text("<html></html>")

    @flow(name="publish-check")
    def publish_check() -> str:
        publish_runs_task("Synthetic", outcomes, db.parent / "runs")
        return publish_results_task("Synthetic", db, str(report))

    state = publish_check(return_state=True)
    assert state.is_completed(), state.message  # a failed grid point does not fail it
    text = state.result()
    with get_client(sync_client=True) as client:
        client_json = _ClientJSON(client)
        check_study_artifacts(
            client_json, str(state.state_details.flow_run_id), "synthetic", report, db
        )
        names = client_json.task_run_states(
            str(state.state_details.flow_run_id), {o.label for o in outcomes}
        )
    stored = crossover_table(db)
    assert "DLM overtakes AR after" in text and len(stored) == 2
    failed = [o.label for o in outcomes if o.status == "failed"]
    assert len(failed) == 1 and names[failed[0]] == "FAILED"
    assert all(names[o.label] == "COMPLETED" for o in outcomes if o.status == "completed")


def test_plan_flow_publishes_the_plan_as_a_table_artifact(test_server: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.plan import plan_flow

    state = plan_flow(unique_tokens=1e9, compute=1e19, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["plan-prior-published"]))
        )
    assert result["verdict"] == "ar" and "recommendation: train AR" in result["text"]
    assert artifact.type == "table" and "verdict: ar" in artifact.description
    rows = result["rows"]
    assert [r["objective"] for r in rows] == ["ar", "dlm"]
    assert all(r["verdict"] == "ar" and r["95% interval"].startswith("[") for r in rows)
    assert str(artifact.flow_run_id) == str(state.state_details.flow_run_id)


class _ClientJSON:
    """The REST calls ``check_study_artifacts`` makes, through Prefect's own client."""

    def __init__(self, client) -> None:
        self.client = client

    def post(self, path: str, body: dict) -> list[dict]:
        return self.client.request("POST", path, json=body).json()

    def task_run_states(
        self, flow_run_id: str, names: set[str], wait_s: float = 180.0
    ) -> dict[str, str | None]:
        """Task-run name -> state type. Prefect records task-run states from events, after the
        flow returns: under load a run can still read as state None, so this waits (a generous
        deadline, not a timed assertion) until every name in ``names`` has a final state."""
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
        deadline = time.monotonic() + wait_s
        while True:
            runs = self.post("/task_runs/filter", body)
            states = {r["name"]: (r["state"] or {}).get("type") for r in runs}
            final = {n for n, t in states.items() if t in ("COMPLETED", "FAILED")}
            if names <= final or time.monotonic() > deadline:
                return states
            time.sleep(0.5)
