"""Deployments of the study flows into a process work pool, declared apart from the flow code.

`flows deploy` (with ``PREFECT_API_URL`` pointing at a server) creates the pool if needed and one
deployment per flow; each is then runnable from the Prefect UI with a parameter form (preset or
config path, home, Ray address). A worker executes them:

    prefect worker start --pool dlm-crossover

The deployments reference the flows by module path (``flows.flows:study_flow``), so the worker's
machine needs this project importable (installed, or PYTHONPATH as set below); no image, no
remote storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.run_task import PROJECT_ROOT, worker_env

DEFAULT_POOL = "dlm-crossover"
DEPLOYMENT_NAME = "default"
# The stop rule of the CPU demo's command (README, "Adaptive sweep"), the adaptive deployment's
# form defaults: on the `adaptive-demo` menu a crossover near 20 epochs is located within the
# cap (planted curves: ~3.1e13 FLOPs, tests/flows/test_adaptive.py), ~30% of the full menu.
# R_D* is not a target there (one model size: not identified), so its width is left off.
DEMO_STOP_RULE = {"target_width": 0.5, "compute_cap": 5e13, "min_seeds": 3, "rd_star_width": None}


def ensure_process_pool(name: str = DEFAULT_POOL) -> None:
    """Create the process work pool ``name`` unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            pass


def _deploy(flow_obj: Any, pool: str, parameters: dict[str, Any], description: str) -> str:
    from prefect.deployments.runner import EntrypointType

    env = worker_env()
    flow_obj.deploy(
        name=DEPLOYMENT_NAME,
        work_pool_name=pool,
        build=False,
        push=False,
        entrypoint_type=EntrypointType.MODULE_PATH,
        job_variables={"env": env, "working_dir": str(PROJECT_ROOT)},
        parameters=parameters,
        description=description,
        tags=["dlm-crossover"],
        print_next_steps=False,
        ignore_warnings=True,
    )
    return f"{flow_obj.name}/{DEPLOYMENT_NAME}"


def deploy_study_flows(pool: str = DEFAULT_POOL, home: str | Path | None = None) -> list[str]:
    """Create (or update) the deployments of every study flow; returns ``flow/deployment`` names."""
    from flows.adaptive import adaptive_flow
    from flows.flows import budgets_flow, report_flow, study_flow, sweep_flow
    from flows.plan import plan_flow

    ensure_process_pool(pool)
    base = {"preset": "demo", "config": None, "home": str(home) if home else None}
    sweep_params = {**base, "ray_address": None, "num_cpus": None}
    return [
        _deploy(study_flow, pool, sweep_params, "Whole study: budgets, runs, DuckDB, report."),
        _deploy(sweep_flow, pool, sweep_params, "Dispatch the grid's runs to Ray."),
        _deploy(
            adaptive_flow,
            pool,
            {**sweep_params, "preset": "adaptive-demo", **DEMO_STOP_RULE},  # the demo's form
            "Adaptive sweep: a seed design, then the grid runs that most narrow the crossover "
            "interval, until it is narrower than the target width or the compute cap is reached.",
        ),
        _deploy(budgets_flow, pool, base, "Build the unique-token budgets."),
        _deploy(report_flow, pool, base, "Ingest runs into DuckDB and write the report."),
        _deploy(
            plan_flow,
            pool,
            {
                "unique_tokens": 1e9,
                "compute": 1e21,
                "study": None,
                "prior": "published",
                "confidence": 0.95,
                "home": base["home"],
            },
            "AR or DLM, model size and epochs at (U, C), from a study's laws or the prior.",
        ),
    ]
