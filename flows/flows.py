"""Prefect flows of a study: budgets -> sweep -> ingest -> report, and `study` chaining them.

Flows only orchestrate; every task is a thin wrapper over a library function that tests call
directly. All Prefect tasks run on the driver: the sweep task calls Ray itself (flows.dispatch), so
Ray workers never touch Prefect. Retries: only Ray retries (lost workers, see flows.dispatch);
no Prefect task here retries, because each wraps work that is either deterministic (a retry fails
the same way) or already skips what it finished (a rerun of the flow resumes instead).

Every flow takes plain parameters (preset or config path, home, Ray address) so a deployment can
be started from the Prefect UI with a form.

One writer per study (flows.writer): the sweep, report and study flows hold the study's writer
lock while they run, whether `flows run` called them or a Prefect worker runs a deployment; a
second writer fails at once with one line naming the lock, or waits when asked (``wait``).
"""

from __future__ import annotations

import errno
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.artifacts import (
    publish_results,
    publish_results_task,
    publish_runs_task,
    with_flow_log,
)
from flows.dispatch import TerminalProgress, record_plan, run_grid
from flows.grid import PlannedRun, expand_grid
from flows.run_task import RunOutcome
from flows.spec import (
    StudySpec,
    load_preset,
    load_spec,
    spec_hash,
)
from flows.study_paths import StudyPaths
from flows.writer import NO_SPACE, disk_full_line, study_writer, writer_timeout
from formats.budget import MANIFEST_NAME
from pipeline.manifest import BudgetManifest
from pipeline.settings import get_settings


@dataclass
class StudySummary:
    """What the CLI prints at the end and what the `study` flow returns."""

    study: str
    db_path: str
    report_path: str | None
    n_runs: int
    completed: int
    skipped: int
    failed: int
    failures: list[dict[str, str]] = field(default_factory=list)
    crossover: str = ""
    report_error: str | None = None  # the runs and DuckDB survive a failed report step
    other_spec_runs: int = 0  # runs of an earlier version of the spec: on disk, not analysed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_spec(preset: str | None = None, config: str | None = None) -> StudySpec:
    """The spec from a YAML path, else a shipped preset (default: demo)."""
    if config:
        return load_spec(config)
    return load_preset(preset or "demo")


# ---- tasks: thin wrappers over library functions ------------------------------------------------


@task(name="build-budgets")
def build_budgets_task(spec: StudySpec, home: Path) -> list[BudgetManifest]:
    from pipeline import build_budgets

    return build_budgets(spec.budgets, home / "budgets")


@task(name="dispatch-runs")
def dispatch_task(
    runs: list[PlannedRun],
    runs_root: Path,
    ray_address: str | None,
    num_cpus: int | None,
    max_retries: int,
    plan_hash: str | None = None,
) -> list[RunOutcome]:
    # Longest runs first: on a small machine the tail of the grid is then many short runs.
    ordered = sorted(runs, key=lambda r: -r.flops)
    settings = get_settings()  # CROSSOVER_RAY_ADDRESS / CROSSOVER_RAY_NUM_CPUS as defaults
    ray_address = ray_address or settings.ray_address
    num_cpus = num_cpus or settings.ray_num_cpus
    progress = TerminalProgress()
    try:
        outcomes = run_grid(
            [replace(r.task(runs_root), spec_hash=plan_hash) for r in ordered],
            ray_address=ray_address,
            num_cpus=num_cpus,
            max_retries=max_retries,
            on_progress=with_flow_log(progress),  # and the flow run's log
        )
    finally:
        progress.close()
    return [_explain_disk_full(o, runs_root) for o in outcomes]


def _explain_disk_full(outcome: RunOutcome, runs_root: Path) -> RunOutcome:
    """A run that failed on a full disk (its reason is the library's text, e.g. safetensors'
    "I/O error: No space left on device") says where, and how much space is left there."""
    if not outcome.reason or NO_SPACE not in outcome.reason:
        return outcome
    where = disk_full_line(runs_root / outcome.run_id)
    return replace(outcome, reason=f"{where} ({outcome.reason})")


@task(name="ingest")
def ingest_task(
    paths: StudyPaths, manifests: list[BudgetManifest] | None, plan_hash: str | None = None
) -> int:
    """Every run dir into DuckDB; analysis then uses the runs ``plan_hash`` planned. Run dirs
    whose files cannot be read are skipped and listed on stderr, one line each."""
    import duckdb

    from analysis.store import ResultsStore

    paths.study_dir.mkdir(parents=True, exist_ok=True)
    try:
        with ResultsStore(paths.db_path) as store:
            for manifest in manifests or []:
                store.ingest_manifest(_manifest_path(manifest))
            if paths.runs_root.exists():
                stats = store.ingest_runs_root(paths.runs_root)
                for run_dir, reason in stats.skipped:
                    print(f"ingest: skipped {Path(run_dir).name}: {reason}", file=sys.stderr)
            store.set_current_spec(plan_hash)
            return int(store.query("SELECT count(*) AS n FROM runs")["n"].iloc[0])
    except duckdb.Error as err:
        # DuckDB says "Could not write file "<path>": No space left on device" in an error of its
        # own (not an OSError); its failed commit leaves the database as it was (tested on a
        # full tmpfs). Raised as the OSError it is, so `flows run` says it in one line.
        if NO_SPACE not in str(err):
            raise
        written = re.search(r'file "([^"]+)"', str(err))
        path = written.group(1) if written else str(paths.db_path)
        raise OSError(errno.ENOSPC, NO_SPACE, path) from err


@task(name="report")
def report_task(paths: StudyPaths) -> str:
    from analysis.report import write_report

    report = str(write_report(paths.db_path, paths.report_dir))
    publish_results(paths.study_dir.name, paths.db_path, report)  # artifacts for the Prefect UI
    return report


@task(name="crossover-summary")
def crossover_task(paths: StudyPaths) -> str:
    from analysis.errors import AnalysisError
    from analysis.summary import crossover_table, format_summary

    try:
        return format_summary(crossover_table(paths.db_path))
    except AnalysisError as err:  # too few finished runs to compare: say so, don't fail the study
        return f"no crossover table: {err}"


def _raise_if_disk_full(state: Any) -> None:
    """A report that failed on a full disk fails the study with that error (`flows run` says it
    in one line: path and free space); any other report failure is the summary's to show."""
    try:
        state.result()
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise
    except Exception:  # noqa: BLE001, S110 - reported through report_error
        pass


def _other_spec_runs(paths: StudyPaths) -> int:
    """Runs in the store that the current spec did not plan (0 when the store is unreadable:
    the report step has said why already)."""
    from analysis.store import ResultsStore

    try:
        found = ResultsStore(paths.db_path).query("SELECT count(*) AS n FROM other_spec_runs")
    except Exception:  # noqa: BLE001 - a summary line, never a reason to fail the study
        return 0
    return int(found["n"].iloc[0])


def _manifest_path(manifest: BudgetManifest) -> Path:
    # manifest.json sits next to the budget's train files (docs/design.md artifact layout).
    return Path(manifest.train_files[0]).parent / MANIFEST_NAME


# ---- flows ---------------------------------------------------------------------------------


@flow(name="budgets", log_prints=False)
def budgets_flow(
    preset: str | None = "demo", config: str | None = None, home: str | None = None
) -> list[str]:
    """Build (or find already built) the study's unique-token budgets; returns their ids.

    Args:
        preset: Shipped study preset (`flows presets` lists them: smoke, demo, ...); used when
            no config is given.
        config: Path of a study YAML file on the worker's machine; overrides the preset.
        home: Studies root where budgets, runs, results.duckdb and the report are written
            (default: CROSSOVER_HOME, else ./studies).
    """
    spec = resolve_spec(preset, config)
    manifests = build_budgets_task(spec, StudyPaths.of(spec, home).home)
    return [m.budget_id for m in manifests]


@flow(name="sweep")
def sweep_flow(
    preset: str | None = "demo",
    config: str | None = None,
    home: str | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    wait: bool = False,
) -> list[dict[str, Any]]:
    """Dispatch every run of the grid to Ray; finished runs are skipped, interrupted ones resume.

    Args:
        preset: Shipped study preset (`flows presets` lists them: smoke, demo, ...); used when
            no config is given.
        config: Path of a study YAML file on the worker's machine; overrides the preset.
        home: Studies root where budgets, runs, results.duckdb and the report are written
            (default: CROSSOVER_HOME, else ./studies).
        ray_address: Ray cluster to run on ("auto", "ray://host:10001"); empty starts a local
            Ray (default: CROSSOVER_RAY_ADDRESS).
        num_cpus: CPUs of the local Ray when one is started (default: CROSSOVER_RAY_NUM_CPUS,
            else all).
        wait: Wait while another process writes this study (default: fail at once, naming
            the lock).
    """
    spec = resolve_spec(preset, config)
    paths = StudyPaths.of(spec, home)
    with study_writer(paths.lock_path, writer_timeout(wait)):
        manifests = build_budgets_task(spec, paths.home)
        outcomes = dispatch_task(
            expand_grid(spec, manifests, torch_threads=get_settings().torch_threads),
            paths.runs_root,
            ray_address,
            num_cpus,
            spec.max_retries,
            spec_hash(spec),
        )
        publish_runs_task(spec.name, outcomes, paths.runs_root)
    return [asdict(o) for o in outcomes]


@flow(name="report")
def report_flow(
    preset: str | None = "demo",
    config: str | None = None,
    home: str | None = None,
    wait: bool = False,
) -> str:
    """Ingest the study's run directories into DuckDB and write the Plotly report.

    Args:
        preset: Shipped study preset (`flows presets` lists them: smoke, demo, ...); used when
            no config is given.
        config: Path of a study YAML file on the worker's machine; overrides the preset.
        home: Studies root where budgets, runs, results.duckdb and the report are written
            (default: CROSSOVER_HOME, else ./studies).
        wait: Wait while another process writes this study (default: up to 2 minutes, then
            fail naming the lock).
    """
    spec = resolve_spec(preset, config)
    paths = StudyPaths.of(spec, home)
    with study_writer(paths.lock_path, writer_timeout(wait, report=True)):
        manifests = build_budgets_task(spec, paths.home)
        _record_plans(spec, manifests, paths)
        ingest_task(paths, manifests, spec_hash(spec))
        return report_task(paths)


def _record_plans(spec: StudySpec, manifests: list[BudgetManifest], paths: StudyPaths) -> None:
    """The current spec's grid marks its run dirs (those that exist) as its own, so a report
    without a sweep before it (or run dirs from before plan.json) still sees them."""
    h = spec_hash(spec)
    for run in expand_grid(spec, manifests):
        if (paths.runs_root / run.run_id).is_dir():
            record_plan(replace(run.task(paths.runs_root), spec_hash=h))


@flow(name="study")
def study_flow(
    preset: str | None = "demo",
    config: str | None = None,
    home: str | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    wait: bool = False,
) -> dict[str, Any]:
    """The whole study: budgets -> runs on Ray -> DuckDB -> report; returns the summary.

    Args:
        preset: Shipped study preset (`flows presets` lists them: smoke, demo, ...); used when
            no config is given.
        config: Path of a study YAML file on the worker's machine; overrides the preset.
        home: Studies root where budgets, runs, results.duckdb and the report are written
            (default: CROSSOVER_HOME, else ./studies).
        ray_address: Ray cluster to run on ("auto", "ray://host:10001"); empty starts a local
            Ray (default: CROSSOVER_RAY_ADDRESS).
        num_cpus: CPUs of the local Ray when one is started (default: CROSSOVER_RAY_NUM_CPUS,
            else all).
        wait: Wait while another process writes this study (default: fail at once, naming
            the lock).
    """
    spec = resolve_spec(preset, config)
    paths = StudyPaths.of(spec, home)
    with study_writer(paths.lock_path, writer_timeout(wait)):  # the subflows reenter it
        return _study(spec, paths, preset, config, home, ray_address, num_cpus)


def _study(
    spec: StudySpec,
    paths: StudyPaths,
    preset: str | None,
    config: str | None,
    home: str | None,
    ray_address: str | None,
    num_cpus: int | None,
) -> dict[str, Any]:
    budgets_flow(preset, config, home)
    outcomes = [RunOutcome(**o) for o in sweep_flow(preset, config, home, ray_address, num_cpus)]
    report_state = report_flow(preset, config, home, return_state=True)
    report_path, report_error = None, None
    if report_state.is_completed():
        report_path = report_state.result()
    else:
        report_error = report_state.message or "report flow failed"
        _raise_if_disk_full(report_state)
    publish_runs_task(spec.name, outcomes, paths.runs_root, per_run_tasks=False)  # UI artifacts
    publish_results_task(spec.name, paths.db_path, report_path)
    summary = StudySummary(
        study=spec.name,
        db_path=str(paths.db_path),
        report_path=report_path,
        n_runs=len(outcomes),
        completed=sum(o.status == "completed" for o in outcomes),
        skipped=sum(o.status == "skipped" for o in outcomes),
        failed=sum(o.status == "failed" for o in outcomes),
        failures=[
            {"run_id": o.run_id, "run": o.label, "reason": o.reason or ""}
            for o in outcomes
            if o.status == "failed"
        ],
        crossover=crossover_task(paths),
        other_spec_runs=_other_spec_runs(paths),
        report_error=report_error,
    )
    return summary.to_dict()
