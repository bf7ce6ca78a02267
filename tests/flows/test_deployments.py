"""A real `prefect server start` on 127.0.0.1: `flows deploy` creates the deployments, one is
triggered through the REST API, a `prefect worker start` of the process pool runs it, and the
study's results land in DuckDB. Every process started here is stopped by its PID at teardown
(the worker ignores SIGTERM, so it gets SIGKILL after a grace period)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

PREFECT_BIN = Path(sys.executable).parent / "prefect"


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture
def prefect_server(free_port: int, cli_env: dict, tmp_path: Path) -> Iterator[dict]:
    """A Prefect server on a free port; yields the environment that points at it."""
    cmd = [str(PREFECT_BIN), "server", "start", "--host", "127.0.0.1", "--port", str(free_port)]
    proc = _start(cmd, cli_env, tmp_path / "server.log")
    api = f"http://127.0.0.1:{free_port}/api"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Prefect server did not become healthy"
            time.sleep(1)
        yield {**cli_env, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    finally:
        _stop(proc, grace=20)


@pytest.fixture
def worker(prefect_server: dict, tmp_path: Path) -> Iterator[subprocess.Popen]:
    cmd = [str(PREFECT_BIN), "worker", "start", "--pool", "dlm-crossover", "--type", "process"]
    proc = _start(cmd, prefect_server, tmp_path / "worker.log")
    try:
        yield proc
    finally:
        _stop(proc, grace=5)  # it ignores SIGTERM: SIGKILL follows


def test_deployment_triggered_through_the_api_runs_on_a_worker(
    prefect_server: dict, home_with_budgets: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env, home = prefect_server, home_with_budgets
    deploy = subprocess.run(
        [sys.executable, "-m", "flows.cli", "deploy", "--home", str(home)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "study/default" in deploy.stdout

    api = env["PREFECT_API_URL"]
    with httpx.Client(base_url=api, timeout=30) as client:
        deployments = client.post("/deployments/filter", json={}).json()
        assert {d["name"] for d in deployments} == {"default"}
        assert len(deployments) == 5
        study = client.get("/deployments/name/study/default").json()
        assert study["work_pool_name"] == "dlm-crossover"
        # The UI's parameter form comes from this schema.
        assert {"preset", "config", "home", "ray_address"} <= set(
            study["parameter_openapi_schema"]["properties"]
        )
        params = {"preset": "smoke", "home": str(home), "num_cpus": 2}
        run = client.post(
            f"/deployments/{study['id']}/create_flow_run", json={"parameters": params}
        )
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]

        request.getfixturevalue("worker")
        deadline = time.monotonic() + 600
        state = None
        while time.monotonic() < deadline:
            state = client.get(f"/flow_runs/{run_id}").json()["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(2)
    assert state == "COMPLETED", (tmp_path / "worker.log").read_text()[-4000:]
    with duckdb.connect(str(home / "smoke" / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone() == (
            4,
        )
    assert (home / "smoke" / "report" / "report.html").exists()
    _check_what_the_ui_shows(api, run_id, home, study)


def _check_what_the_ui_shows(api: str, run_id: str, home: Path, deployment: dict) -> None:
    """Parameter descriptions in the run form; the study run's artifacts (crossover table with
    the DuckDB rows, runs table, report link, results markdown); grid points as named task
    runs; the progress line in the flow logs."""
    from artifact_checks import RestAPI, check_progress_logged, check_study_artifacts

    props = deployment["parameter_openapi_schema"]["properties"]
    assert all(p.get("description") for p in props.values()), props
    db = home / "smoke" / "results.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        labels = con.execute(
            "SELECT DISTINCT objective, model_name, unique_tokens, epochs, seed FROM runs"
        ).fetchall()
    with httpx.Client(base_url=api, timeout=30) as client:
        rest = RestAPI(client)
        check_study_artifacts(rest, run_id, "smoke", home / "smoke" / "report" / "report.html", db)
        names = {r["name"] for r in rest.post("/task_runs/filter", {"limit": 200})}
        grid_points = {n for n in names if n.count("/") == 4 and n.startswith(("ar/", "dlm/"))}
        assert len(grid_points) == len(labels) == 4, sorted(names)
        check_progress_logged(rest, len(labels))
