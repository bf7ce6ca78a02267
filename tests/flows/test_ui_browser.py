"""The Prefect UI in a real browser: `flows server` on a free port, `flows deploy`, the smoke
study run by a `prefect worker`, then headless Chromium (driven by Playwright) opens the flow
run page and finds the crossover table artifact (with the DuckDB rows) and the report link.

Skipped with a reason when Playwright or a Chromium is missing; Playwright cannot download its
own browsers here, so it drives the system's Chromium (`apt-get install chromium`, or
BROWSER_PATH). Every process started here is stopped by its PID at teardown."""

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
from artifact_checks import RestAPI, check_progress_logged, check_study_artifacts
from flows_fixtures import free_ports

from analysis.report import find_chromium

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (the dev extra installs it)"
)
CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (apt-get install chromium, or set BROWSER_PATH)"
)
PREFECT_BIN = Path(sys.executable).parent / "prefect"
UI_TIMEOUT_MS = 120_000  # a loaded 2-core machine renders the UI slowly


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


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


def _wait_healthy(proc: subprocess.Popen, api: str, log: Path) -> None:
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "flows server did not become healthy"
        time.sleep(1)


@pytest.fixture(scope="module")
def study_run(smoke_spec, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The smoke study run through a deployment and a worker against `flows server`."""
    from pipeline import build_budgets

    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "home"
    build_budgets(smoke_spec.budgets, home / "budgets")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        OMP_NUM_THREADS="1",
    )
    port = free_ports(1)[0]
    server = _start(
        [sys.executable, "-m", "flows.cli", "server", "--port", str(port)], env, tmp / "server.log"
    )
    worker = None
    try:
        api = f"http://127.0.0.1:{port}/api"
        _wait_healthy(server, api, tmp / "server.log")
        env = {**env, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "2"}
        deploy = subprocess.run(
            [sys.executable, "-m", "flows.cli", "deploy", "--home", str(home)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        with httpx.Client(base_url=api, timeout=30) as client:
            study = client.get("/deployments/name/study/default").json()
            params = {"preset": "smoke", "home": str(home), "num_cpus": 2}
            run = client.post(
                f"/deployments/{study['id']}/create_flow_run", json={"parameters": params}
            )
            assert run.status_code == 201, run.text
            run_id = run.json()["id"]
            cmd = [str(PREFECT_BIN), "worker", "start", "--pool", "dlm-crossover"]
            worker = _start([*cmd, "--type", "process"], env, tmp / "worker.log")
            deadline, state = time.monotonic() + 600, None
            while time.monotonic() < deadline:
                state = client.get(f"/flow_runs/{run_id}").json()["state"]["type"]
                if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                time.sleep(2)
        assert state == "COMPLETED", (tmp / "worker.log").read_text()[-4000:]
        yield {"api": api, "ui": f"http://127.0.0.1:{port}", "run_id": run_id, "home": home,
               "tmp": tmp}  # fmt: skip
    finally:
        if worker is not None:
            _stop(worker, grace=5)  # it ignores SIGTERM: SIGKILL follows
        _stop(server, grace=30)  # flows server stops its prefect child on SIGTERM


def test_study_run_has_its_artifacts_over_the_api(study_run: dict) -> None:
    home = study_run["home"]
    with httpx.Client(base_url=study_run["api"], timeout=30) as client:
        rest = RestAPI(client)
        check_study_artifacts(
            rest, study_run["run_id"], "smoke", home / "smoke" / "report" / "report.html",
            home / "smoke" / "results.duckdb",
        )  # fmt: skip
        check_progress_logged(rest, 4)


def test_browser_shows_crossover_table_and_report_link(study_run: dict) -> None:
    home = study_run["home"]
    report = (home / "smoke" / "report" / "report.html").resolve()
    with duckdb.connect(str(home / "smoke" / "results.duckdb"), read_only=True) as con:
        statuses = [r[0] for r in con.execute("SELECT status FROM crossovers").fetchall()]
    assert statuses
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        run_page = f"{study_run['ui']}/runs/flow-run/{study_run['run_id']}"
        try:
            page.goto(run_page)
            page.get_by_text("Artifacts", exact=True).first.click()
            sync_api.expect(page.get_by_text("report-smoke", exact=True)).to_be_visible()
            page.get_by_text("crossovers-smoke", exact=True).click()
            # The artifact page renders the table: its header and the stored rows' statuses.
            for text in ("P(crossover)", "95% interval (epochs)", "bootstrap draws"):
                sync_api.expect(page.get_by_text(text, exact=True).first).to_be_visible()
            for status in set(statuses):
                sync_api.expect(page.get_by_text(status, exact=True).first).to_be_visible()
            page.goto(run_page)
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("report-smoke", exact=True).click()
            link = page.locator(f'a[href="{report.as_uri()}"]')
            sync_api.expect(link.first).to_be_visible()
            assert link.first.inner_text() == str(report)
        except Exception:
            page.screenshot(path=str(study_run["tmp"] / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
