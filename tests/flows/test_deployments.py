"""Deployments end to end, once per module: `flows server` on a free port, `flows deploy` creates
the deployments, the `study` one is triggered through the REST API and a `prefect worker start`
of the process pool runs the smoke study. Then what a user sees of that one run: the runs in
DuckDB and the report, the artifacts, named task runs and progress line over the API, and the
crossover table and report link in the UI itself (headless Chromium driven by Playwright).

The study runs once for all tests here (a server, a worker and a study cost minutes on a loaded
2-core machine); the tests only read what it left. Every process started here is stopped by its
PID at teardown (the worker ignores SIGTERM, so it gets SIGKILL after a grace period).

The browser test is skipped with a reason when Playwright or a Chromium is missing; Playwright
cannot download its own browsers here, so it drives the system's Chromium (`apt-get install
chromium`, or BROWSER_PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from artifact_checks import RestAPI, check_progress_logged, check_study_artifacts
from flows_fixtures import free_ports, start_logged, wait_healthy

from analysis.report import find_chromium
from flows.server import stop_group

PREFECT_BIN = Path(sys.executable).parent / "prefect"
RUN_TIMEOUT_S = 600  # the smoke study on a worker; generous on a loaded 2-core machine
UI_TIMEOUT_MS = 120_000  # a loaded 2-core machine renders the UI slowly (expect() defaults to 5 s)


@pytest.fixture(scope="module")
def deployed_study(
    smoke_spec, migrated_prefect_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The smoke study run through the `study` deployment by a worker against `flows server`."""
    from pipeline import build_budgets

    tmp = tmp_path_factory.mktemp("deployed")
    home = tmp / "home"
    (tmp / "prefect-home").mkdir()  # fresh, with the session's migrated empty database
    shutil.copy2(migrated_prefect_db, tmp / "prefect-home" / "prefect.db")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp / "prefect-home"),  # no state from another test or user
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(root),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        OMP_NUM_THREADS="1",
    )
    port = free_ports(1)[0]
    server_cmd = [sys.executable, "-m", "flows.cli", "server", "--port", str(port)]
    server = start_logged(server_cmd, env, tmp / "server.log")
    worker = None
    try:
        build_budgets(smoke_spec.budgets, home / "budgets")  # while the server migrates its db
        api = f"http://127.0.0.1:{port}/api"
        wait_healthy(server, api, tmp / "server.log")
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
            # Started only now: started before `flows deploy`, its polling left the POST above
            # with a 503 (SQLite busy) at load ~15.
            cmd = [str(PREFECT_BIN), "worker", "start", "--pool", "dlm-crossover"]
            worker = start_logged([*cmd, "--type", "process"], env, tmp / "worker.log")
            deadline, state = time.monotonic() + RUN_TIMEOUT_S, None
            while time.monotonic() < deadline:
                state = client.get(f"/flow_runs/{run_id}").json()["state"]["type"]
                if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                time.sleep(2)
        assert state == "COMPLETED", (tmp / "worker.log").read_text()[-4000:]
        yield {
            "api": api, "ui": f"http://127.0.0.1:{port}", "run_id": run_id, "home": home,
            "tmp": tmp, "deploy_stdout": deploy.stdout, "study_deployment": study,
        }  # fmt: skip
    finally:
        if worker is not None:
            stop_group(worker, grace_s=5)  # it ignores SIGTERM: SIGKILL follows
        stop_group(server, grace_s=30)  # flows server stops its prefect child on SIGTERM


def test_deploy_creates_the_study_flows_with_a_described_run_form(deployed_study: dict) -> None:
    assert "study/default" in deployed_study["deploy_stdout"]
    with httpx.Client(base_url=deployed_study["api"], timeout=30) as client:
        deployments = client.post("/deployments/filter", json={}).json()
    assert {d["name"] for d in deployments} == {"default"}
    assert len(deployments) == 6  # study, sweep, adaptive-sweep, budgets, report, plan
    study = deployed_study["study_deployment"]
    assert study["work_pool_name"] == "dlm-crossover"
    # The UI's parameter form comes from this schema: every field described.
    props = study["parameter_openapi_schema"]["properties"]
    assert {"preset", "config", "home", "ray_address"} <= set(props)
    assert all(p.get("description") for p in props.values()), props


def test_adaptive_sweep_deployment_has_the_demo_form(deployed_study: dict) -> None:
    """The adaptive sweep is startable from the UI: its form holds the stop rule (target
    width, compute cap, seeds per setting), described, with the CPU demo's values filled in."""
    from flows.deployments import DEMO_STOP_RULE

    assert "adaptive-sweep/default" in deployed_study["deploy_stdout"]
    with httpx.Client(base_url=deployed_study["api"], timeout=30) as client:
        adaptive = client.get("/deployments/name/adaptive-sweep/default").json()
    assert adaptive["work_pool_name"] == "dlm-crossover"
    assert adaptive["entrypoint"] == "flows.adaptive.adaptive_flow"  # module path
    props = adaptive["parameter_openapi_schema"]["properties"]
    form = {"preset", "config", "home", "ray_address", "num_cpus"} | set(DEMO_STOP_RULE)
    assert form == set(props)
    assert all(p.get("description") for p in props.values()), props
    assert adaptive["parameters"] == {
        "preset": "adaptive-demo", "config": None, "home": str(deployed_study["home"]),
        "ray_address": None, "num_cpus": None, **DEMO_STOP_RULE,
    }  # fmt: skip


def test_deployment_run_on_a_worker_lands_in_duckdb_with_its_artifacts(
    deployed_study: dict,
) -> None:
    """The worker's run wrote the study (4 completed runs, the report); the flow run holds the
    crossover table (DuckDB's rows), runs table, report link and results markdown; each grid
    point is a task run named by its label; the progress line is in the flow logs."""
    home = deployed_study["home"]
    db = home / "smoke" / "results.duckdb"
    report = home / "smoke" / "report" / "report.html"
    with duckdb.connect(str(db), read_only=True) as con:
        completed = con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()
        labels = con.execute(
            "SELECT DISTINCT objective, model_name, unique_tokens, epochs, seed FROM runs"
        ).fetchall()
    assert completed == (4,) and report.exists()
    with httpx.Client(base_url=deployed_study["api"], timeout=30) as client:
        rest = RestAPI(client)
        check_study_artifacts(rest, deployed_study["run_id"], "smoke", report, db)
        names = {r["name"] for r in rest.post("/task_runs/filter", {"limit": 200})}
        grid_points = {n for n in names if n.count("/") == 4 and n.startswith(("ar/", "dlm/"))}
        assert len(grid_points) == len(labels) == 4, sorted(names)
        check_progress_logged(rest, len(labels))


def test_browser_shows_crossover_table_and_report_link(deployed_study: dict) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the dev extra installs it)"
    )
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium, or set BROWSER_PATH)")
    home = deployed_study["home"]
    report = (home / "smoke" / "report" / "report.html").resolve()
    with duckdb.connect(str(home / "smoke" / "results.duckdb"), read_only=True) as con:
        statuses = [r[0] for r in con.execute("SELECT status FROM crossovers").fetchall()]
    assert statuses

    def visible(locator) -> None:  # expect() waits 5 s unless told: as long as the page here
        sync_api.expect(locator).to_be_visible(timeout=UI_TIMEOUT_MS)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        run_page = f"{deployed_study['ui']}/runs/flow-run/{deployed_study['run_id']}"
        try:
            page.goto(run_page)
            page.get_by_text("Artifacts", exact=True).first.click()
            visible(page.get_by_text("report-smoke", exact=True))
            page.get_by_text("crossovers-smoke", exact=True).click()
            # The artifact page renders the table: its header and the stored rows' statuses.
            for text in ("P(crossover)", "95% interval (epochs)", "bootstrap draws"):
                visible(page.get_by_text(text, exact=True).first)
            for status in set(statuses):
                visible(page.get_by_text(status, exact=True).first)
            page.goto(run_page)
            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("report-smoke", exact=True).click()
            link = page.locator(f'a[href="{report.as_uri()}"]')
            visible(link.first)
            assert link.first.inner_text() == str(report)
        except Exception:
            page.screenshot(path=str(deployed_study["tmp"] / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
