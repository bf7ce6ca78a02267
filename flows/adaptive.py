"""The adaptive sweep flow: the study's grid as candidates, runs chosen batch by batch.

Thin: the loop and the acquisition are ``analysis.adaptive_loop`` / ``analysis.adaptive``; each
batch goes through the same tasks as the normal sweep (``flows.flows.dispatch_task`` -> Ray via
``flows.dispatch.run_grid``, then ``ingest_task``), so resume, retries, plan.json and the
per-spec run selection are the sweep's own. Every decision is written to DuckDB
(``adaptive_steps``) as it is taken, and published as a table artifact at the end.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.artifacts import artifact_key
from flows.dispatch import connect_ray, is_completed
from flows.flows import (
    StudyPaths,
    build_budgets_task,
    crossover_task,
    dispatch_task,
    ingest_task,
    report_task,
    resolve_spec,
)
from flows.grid import PlannedRun, expand_grid
from flows.run_task import RunOutcome
from flows.spec import spec_hash
from pipeline.settings import get_settings

STEPS_TABLE = "adaptive_steps"


def candidate_of(run: PlannedRun) -> Any:  # -> analysis.adaptive.Candidate
    from analysis.adaptive import Candidate

    return Candidate(
        key=run.run_id,
        label=run.label,
        objective=run.objective,
        model_name=run.model_name,
        unique_tokens=run.unique_tokens,
        epochs=float(run.epochs),
        seed=run.seed,
        flops=float(run.flops),
    )


def step_rows(steps: list[Any]) -> list[dict[str, Any]]:
    """Artifact rows (JSON has no NaN/inf): one per decision, the short columns."""

    def num(x: float, fmt: str) -> str | None:
        if x is None or math.isnan(x):
            return None
        return "inf" if math.isinf(x) else f"{x:{fmt}}"

    return [
        {
            "step": s.step,
            "decision": s.kind,
            "runs": s.runs or None,
            "why": s.why,
            "interval before": s.interval_before,
            "interval after": s.interval_after,
            "width after (hi/lo - 1)": num(s.max_width_after, ".3f"),
            "R_D* after": s.rd_star or None,
            "chosen for": s.target or None,
            "compute spent (FLOPs)": num(s.compute_spent, ".3e"),
        }
        for s in steps
    ]


def decision_lines(steps: list[Any]) -> list[str]:
    """One terminal line per decision: what ran, why, the interval after it, compute so far."""
    return [
        f"{s.step:>3} {s.kind:<11} {s.n_runs:>3} runs  {s.interval_after:<28} "
        f"{s.compute_spent:.3e} FLOPs  {s.why}"
        for s in steps
    ]


@task(name="write-adaptive-steps")
def write_steps_task(paths: StudyPaths, steps: list[Any]) -> None:
    """The whole decision log so far, replacing the table (a rerun replays the same steps)."""
    from analysis.adaptive_loop import steps_frame
    from analysis.store import ResultsStore

    ResultsStore(paths.db_path).replace_derived_table(STEPS_TABLE, steps_frame(steps))


@contextmanager
def one_ray(ray_address: str | None, num_cpus: int | None) -> Iterator[Callable[[], None]]:
    """One Ray for every batch of the sweep (``run_grid`` uses a Ray already connected and
    leaves it up): an embedded Ray starts once, not once per step, and only when a batch has a
    run to train (a rerun whose chosen runs are all finished starts none). Yields the
    function that connects on first call."""
    import ray

    settings = get_settings()
    address = ray_address or settings.ray_address
    state: dict[str, Any] = {"started": False, "temp": None}

    def ensure() -> None:
        if state["started"] or ray.is_initialized():
            return
        temp = None if address else Path(tempfile.mkdtemp(prefix="ray-"))
        state["temp"] = temp
        state["started"] = connect_ray(address, num_cpus or settings.ray_num_cpus, temp)

    try:
        yield ensure
    finally:
        if state["started"]:
            ray.shutdown()
        if state["temp"] is not None:
            shutil.rmtree(state["temp"], ignore_errors=True)


def _observe(paths: StudyPaths) -> Any:
    from analysis.adaptive_loop import final_points
    from analysis.store import ResultsStore

    store = ResultsStore(paths.db_path)
    return final_points(store.query("SELECT * FROM eval_points ORDER BY run_id, step"))


@flow(name="adaptive-sweep")
def adaptive_flow(
    preset: str | None = "demo",
    config: str | None = None,
    home: str | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    target_width: float = 0.5,
    compute_cap: float | None = None,
    min_seeds: int = 3,
    rd_star_width: float | None = None,
) -> dict[str, Any]:
    """Adaptive sweep: a seed design, then the runs that most narrow the crossover interval.

    Args:
        preset: Shipped study preset; its grid is the set of runs to choose from.
        config: Path of a study YAML file on the worker's machine; overrides the preset.
        home: Studies root (default: CROSSOVER_HOME, else ./studies).
        ray_address: Ray cluster to run on; empty starts a local Ray.
        num_cpus: CPUs of the local Ray when one is started.
        target_width: Stop when every (model, budget) crossover interval has hi/lo - 1 at most
            this (0.5: the upper edge at most 1.5x the lower).
        compute_cap: Planned training FLOPs never pass this; the sweep stops when no run near
            the crossover (an extension, a fill, a replicate) fits under it.
        min_seeds: Seeds per epoch setting (3: the crossover interval resamples seeds, as
            its coverage is calibrated for; one seed draws the spread from the scatter about a
            smooth curve over epoch settings, or reads "not identified" with too few).
        rd_star_width: Also choose runs until each objective's R_D* interval has hi/lo - 1 at
            most this, where R_D* is identified (>= 3 model sizes, a closed interval); None:
            R_D* is only logged.
    """
    from analysis.adaptive import AcquisitionConfig
    from analysis.adaptive_loop import AdaptiveConfig, describe_rd_star, run_adaptive

    spec = resolve_spec(preset, config)
    paths = StudyPaths.of(spec, home)
    manifests = build_budgets_task(spec, paths.home)
    planned = {r.run_id: r for r in expand_grid(spec, manifests)}
    h = spec_hash(spec)
    outcomes: list[RunOutcome] = []

    def run(batch: list[Any]) -> None:
        runs = [planned[c.key] for c in batch]
        if not all(is_completed(paths.runs_root / r.run_id) for r in runs):
            ensure_ray()
        outcomes.extend(
            dispatch_task(runs, paths.runs_root, ray_address, num_cpus, spec.max_retries, h)
        )
        ingest_task(paths, manifests, h)

    ingest_task(paths, manifests, h)  # runs of an earlier (interrupted) adaptive sweep count
    cfg = AdaptiveConfig(
        target_width=target_width,
        compute_cap=compute_cap,
        acquisition=AcquisitionConfig(min_seeds=min_seeds),
        rd_star_width=rd_star_width,
    )
    with one_ray(ray_address, num_cpus) as ensure_ray:
        result = run_adaptive(
            [candidate_of(r) for r in planned.values()],
            run,
            lambda: _observe(paths),
            cfg,
            on_step=lambda steps: write_steps_task(paths, list(steps)),
            laws=describe_rd_star,
        )
    create_table_artifact(
        step_rows(result.steps),
        key=artifact_key("adaptive-steps", spec.name),
        description=f"Adaptive sweep decisions of study {spec.name} (DuckDB `{STEPS_TABLE}`)",
    )
    report = report_task(paths)
    grid_flops = sum(r.flops for r in planned.values())
    return {
        "study": spec.name,
        "db_path": str(paths.db_path),
        "report_path": report,
        "stop_reason": result.stop_reason,
        "steps": len(result.steps),
        "runs_done": len({o.run_id for o in outcomes}),
        "grid_runs": len(planned),
        "compute_spent": result.compute_spent,
        "grid_compute": grid_flops,
        "intervals": {f"{m} U={u}": iv.describe() for (m, u), iv in result.intervals.items()},
        "decisions": decision_lines(result.steps),
        "failed": sum(o.status == "failed" for o in outcomes),
        "failures": [asdict(o) for o in outcomes if o.status == "failed"],
        "crossover": crossover_task(paths),
    }


def format_adaptive(summary: dict[str, Any]) -> str:
    """The terminal's end-of-sweep lines."""
    share = summary["compute_spent"] / summary["grid_compute"] if summary["grid_compute"] else 0
    lines = [
        "",
        f"adaptive sweep {summary['study']}: {summary['stop_reason']}",
        f"{summary['steps']} decisions, {summary['runs_done']} of the menu's "
        f"{summary['grid_runs']} runs, {summary['compute_spent']:.3e} of its "
        f"{summary['grid_compute']:.3e} FLOPs ({100 * share:.0f}% of the menu)",
        *(f"  {g}: {iv}" for g, iv in summary["intervals"].items()),
        "decisions (step, kind, runs, crossover interval after, compute spent, why):",
        *(f"  {line}" for line in summary.get("decisions", [])),
        f"all columns: SELECT * FROM {STEPS_TABLE} ORDER BY step  (duckdb {summary['db_path']})",
        f"report: {summary['report_path']}",
    ]
    if summary.get("crossover"):
        lines += ["", summary["crossover"]]
    lines += [f"FAILED {f['label']} ({f['run_id']}): {f['reason']}" for f in summary["failures"]]
    return "\n".join(lines)
