"""`flows`: run a study from the terminal, inspect it, serve the Prefect UI, create deployments.

    flows run sweep --preset demo            # budgets -> runs on Ray -> DuckDB -> report
    flows run sweep --config study.yaml --ray-address auto
    flows run sweep --preset paper-full --dry-run   # the grid and its FLOPs, nothing runs
    flows run sweep --preset adaptive-demo --adaptive --target-width 0.5   # runs chosen adaptively
    flows run budgets|report|study ...
    flows status --preset demo
    flows plan --unique-tokens 1e10 --compute 1e22 --prior published   # or --study NAME
    flows server --port 4200                 # Prefect UI on http://127.0.0.1:4200
    flows deploy                             # deployments into the `dlm-crossover` process pool

Exit code: 0 when every run completed (or was already complete), 1 when any run failed, 2 for a
bad spec or command line, or when another process is writing the same study (``--wait`` waits).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from flows.watchdog import start_watchdog
from flows.writer import StudyBusy, disk_full_line, study_writer, writer_timeout
from pipeline.errors import OneLineArgumentParser
from pipeline.settings import apply_offline_defaults

_WATCHDOG: Any = None  # flows.watchdog process of a `flows run`: it stops our children if we die


def _quiet() -> None:
    """No walls of library logs: Prefect and Ray speak at WARNING unless the user says otherwise."""
    apply_offline_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if os.environ.get("PREFECT_HOME"):  # Prefect creates only the last path component
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # Fits over few points warn per bootstrap sample; the report states what could not be fitted.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"analysis\.")
    for name in ("ray", "prefect", "httpx", "uvicorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # datatrove logs every step at INFO through loguru
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass


class FlowRunFailed(RuntimeError):
    """A flow ended Failed/Crashed; Prefect has logged its traceback above."""


def _call_flow(flow_fn: Any, **params: Any) -> Any:
    state = flow_fn(**params, return_state=True)
    if not state.is_completed():
        try:
            state.result()  # re-raises what failed the flow
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise  # main() says it in one line
        except Exception:
            pass
        raise FlowRunFailed(f"flow {flow_fn.name!r} failed: {state.message}")
    return state.result()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"wants a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"wants a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"wants a port in 1..65535, got {text!r}")
    return value


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", help="shipped study preset (default: demo)")
    group.add_argument("--config", help="study YAML file")
    parser.add_argument("--home", help="studies root (default: $CROSSOVER_HOME or ./studies)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="flows", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a flow of a study")
    run.add_argument(
        "flow",
        choices=["sweep", "study", "budgets", "report"],
        help="sweep/study: the whole study; budgets: data only; report: ingest + report",
    )
    _add_spec_args(run)
    run.add_argument("--ray-address", help="Ray cluster ('auto', 'ray://host:10001', host:port)")
    run.add_argument(
        "--num-cpus", type=_positive_int, help="CPUs of the embedded Ray (default: all)"
    )
    run.add_argument("--dry-run", action="store_true", help="print the grid and FLOPs, run nothing")
    run.add_argument("--json", action="store_true", help="print the final summary as JSON")
    run.add_argument(
        "--wait", action="store_true", help="wait while another process writes this study"
    )

    run.add_argument(
        "--adaptive",
        action="store_true",
        help="sweep only: choose runs of the grid batch by batch to narrow the crossover",
    )
    run.add_argument(
        "--target-width",
        type=_positive_float,
        default=0.5,
        help="--adaptive: stop when every crossover interval has hi/lo - 1 <= this (default 0.5)",
    )
    run.add_argument(
        "--compute-cap", type=_positive_float, help="--adaptive: training FLOPs not to pass"
    )
    run.add_argument(
        "--min-seeds",
        type=_positive_int,
        default=3,
        help="--adaptive: seeds per epoch setting (default 3: calibrated intervals)",
    )
    run.add_argument(
        "--rd-star-width",
        type=_positive_float,
        help="--adaptive: also narrow each objective's R_D* interval to hi/lo - 1 <= this "
        "(needs >= 3 model sizes; default: R_D* only logged)",
    )

    status = sub.add_parser("status", help="state of every run of a study")
    _add_spec_args(status)

    server = sub.add_parser("server", help="start the Prefect server and UI (foreground)")
    server.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    server.add_argument("--port", type=_port, default=4200)

    deploy = sub.add_parser("deploy", help="create the study deployments in a process work pool")
    deploy.add_argument("--pool", default=None, help="work pool name (default: dlm-crossover)")
    deploy.add_argument("--home", help="studies root the deployed flows write to")

    sub.add_parser("presets", help="list the shipped study presets")
    _add_plan_parser(sub)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"wants a positive number, got {text!r}")
    return value


def _add_plan_parser(sub: Any) -> None:
    plan = sub.add_parser("plan", help="AR or DLM, how large, how many epochs, at (U, C)")
    plan.add_argument("--unique-tokens", type=_positive_float, required=True, help="U")
    plan.add_argument("--compute", type=_positive_float, required=True, help="C in FLOPs (6ND)")
    source = plan.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", help="use this study's fitted laws (its results.duckdb)")
    source.add_argument("--prior", choices=["published"], help="use the published prior")
    plan.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    plan.add_argument("--home", help="studies root (default: $CROSSOVER_HOME or ./studies)")
    plan.add_argument("--figure", help="write the (U, C) region figure to this HTML file")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    if args.command == "server":  # before flows.spec, which imports torch
        from flows.server import serve

        return serve(args.host, args.port)
    from flows.spec import StudySpecError

    try:
        return _dispatch(args)
    except FlowRunFailed as err:
        print(f"flows: {err}", file=sys.stderr)
        return 1
    except StudySpecError as err:
        print(f"flows: invalid study spec:\n{err}", file=sys.stderr)
        return 2
    except StudyBusy as err:
        print(f"flows: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nflows: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"flows: {disk_full_message(err)}", file=sys.stderr)
        return 1


def disk_full_message(err: OSError) -> str:
    """One line for a full disk: the path and the free space left there."""
    return disk_full_line(Path(err.filename or os.getcwd()))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "presets":
        from flows.spec import PRESETS_DIR

        for path in sorted(PRESETS_DIR.glob("*.yaml")):
            print(path.stem)
        return 0
    if args.command == "deploy":
        from flows.deployments import DEFAULT_POOL, deploy_study_flows

        if not os.environ.get("PREFECT_API_URL"):
            # Without a server, Prefect would deploy into a temporary one that vanishes on exit.
            print(
                "flows deploy: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after "
                "`flows server`)",
                file=sys.stderr,
            )
            return 2

        names = deploy_study_flows(args.pool or DEFAULT_POOL, home=args.home)
        print("deployments: " + ", ".join(names))
        print(f"start a worker: prefect worker start --pool {args.pool or DEFAULT_POOL}")
        return 0
    if args.command == "status":
        return _status(args)
    if args.command == "plan":
        from flows.planning import plan_command

        return plan_command(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.adaptive and args.flow != "sweep":
        print("flows: --adaptive: only with `flows run sweep`", file=sys.stderr)
        return 2
    spec = _load_spec_or_exit(args)
    if args.dry_run:
        return _dry_run(spec, args.home)
    if args.flow != "report":  # a bad corpus is one line here, before Prefect, Ray or the lock
        _build_budgets_or_exit(spec, args)
    from flows.study_paths import StudyPaths

    params = {"preset": args.preset, "config": args.config, "home": args.home}
    global _WATCHDOG  # the pipe to it must live as long as this process
    _WATCHDOG = _WATCHDOG or start_watchdog()
    # A report waits a while for a running sweep's ingest; a second sweep says so at once.
    timeout = writer_timeout(args.wait, report=args.flow == "report")
    with study_writer(StudyPaths.of(spec, args.home).lock_path, timeout):
        return _run_locked(args, spec, params)


def _run_locked(args: argparse.Namespace, spec: Any, params: dict[str, Any]) -> int:
    from flows.study_paths import StudyPaths

    if args.flow == "budgets":
        from flows.flows import budgets_flow

        print("budgets: " + ", ".join(_call_flow(budgets_flow, **params)))
        return 0
    if args.flow == "report":
        from flows.flows import report_flow

        print(f"report: {_call_flow(report_flow, **params)}")
        print(f"results: {StudyPaths.of(spec, args.home).db_path}")
        return 0
    if args.adaptive:
        from flows.adaptive import adaptive_flow, format_adaptive

        summary = _call_flow(
            adaptive_flow,
            **params,
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
            target_width=args.target_width,
            compute_cap=args.compute_cap,
            min_seeds=args.min_seeds,
            rd_star_width=args.rd_star_width,
        )
        print(json.dumps(summary, indent=2) if args.json else format_adaptive(summary))
        return 1 if summary["failed"] else 0
    from flows.flows import study_flow

    print(f"study {spec.name}: writing under {StudyPaths.of(spec, args.home).study_dir}")
    summary = _call_flow(study_flow, **params, ray_address=args.ray_address, num_cpus=args.num_cpus)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 1 if summary["failed"] or summary.get("report_error") else 0


def _dry_run(spec: Any, home: str | None) -> int:
    from flows.grid import expand_grid, format_grid

    print(f"study {spec.name}: {spec.description}")
    print(format_grid(expand_grid(spec, _built_manifests(spec, home))))
    return 0


def _built_manifests(spec: Any, home: str | None) -> list[Any] | None:
    """Manifests of an already built budget spec, so a dry run shows the final run ids."""
    from flows.study_paths import StudyPaths
    from formats.budget import manifest_paths
    from pipeline.manifest import load_manifest

    root = StudyPaths.of(spec, home).home / "budgets" / spec.budgets.spec_hash
    paths = manifest_paths(root)
    if len(paths) != len(spec.budgets.sizes):
        return None
    return [load_manifest(p) for p in paths]


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"study {summary['study']}: {summary['n_runs']} runs: {summary['completed']} trained, "
        f"{summary['skipped']} already done, {summary['failed']} failed",
        f"results (DuckDB): {summary['db_path']}",
        f"report: {summary['report_path'] or 'FAILED: ' + str(summary.get('report_error'))}",
    ]
    if summary.get("other_spec_runs"):
        lines.append(
            f"left out: {summary['other_spec_runs']} runs of an earlier version of this study's "
            "spec (kept on disk; a changed spec under the same name starts a new generation)"
        )
    if summary.get("crossover"):
        lines += ["", summary["crossover"]]
    for failure in summary.get("failures", []):
        lines.append(f"FAILED {failure['run']} ({failure['run_id']}): {failure['reason']}")
    return "\n".join(lines)


def _failure(run_dir: Path) -> dict[str, Any] | None:
    """failure.json of a run whose worker died past its retries (flows.dispatch)."""
    from formats.run_dir import FAILURE_FILE

    try:
        return json.loads((run_dir / FAILURE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _status(args: argparse.Namespace) -> int:
    spec = _load_spec_or_exit(args)
    from flows.dispatch import read_status
    from flows.grid import expand_grid
    from flows.study_paths import StudyPaths
    from formats.run_dir import CKPT_DIR, METRICS_FILE

    paths = StudyPaths.of(spec, args.home)
    manifests = _built_manifests(spec, args.home)
    if manifests is None:
        print(f"study {spec.name}: budgets not built yet ({len(spec.budgets.sizes)} requested)")
    counts: dict[str, int] = {}
    for run in expand_grid(spec, manifests):
        run_dir = paths.runs_root / run.run_id
        result = read_status(run_dir) or _failure(run_dir)
        if result is not None:
            state = result.get("status", "unknown")
        elif (run_dir / CKPT_DIR).exists() or (run_dir / METRICS_FILE).exists():
            state = "started"  # running now, or interrupted (resumes on the next sweep)
        else:
            state = "pending"
        counts[state] = counts.get(state, 0) + 1
        reason = f"  {result.get('failure_reason')}" if state == "failed" and result else ""
        print(f"{run.run_id}  {run.label:<34} {state}{reason}")
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    db = paths.db_path
    print(f"results (DuckDB): {db if db.exists() else 'not yet ingested'}")
    return 0


def _load_spec_or_exit(args: argparse.Namespace) -> Any:
    """The edge validator: the spec file and its fields, checked before anything imports Prefect
    or starts Ray; a problem is printed as `flows: ...` lines and exits 2."""
    from flows.spec import StudySpecError, load_preset, load_spec

    try:
        return load_spec(args.config) if args.config else load_preset(args.preset or "demo")
    except StudySpecError as err:
        print(f"flows: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _build_budgets_or_exit(spec: Any, args: argparse.Namespace) -> None:
    """Build the study's budgets (or find them built) before Prefect and Ray start, so a missing
    corpus or an unreadable record is one line naming the file, exit 2, not a failed flow; the
    flow's own budgets task then finds them built."""
    from pipeline.budgets import build_budgets
    from pipeline.errors import PipelineError
    from pipeline.readers import format_bad_records
    from pipeline.settings import get_settings

    home = (Path(args.home) if args.home else get_settings().home).resolve()
    where = args.config or f"preset {args.preset or 'demo'}"
    try:
        manifests = build_budgets(
            spec.budgets, home / "budgets", progress=lambda m: print(f"budgets: {m}")
        )
    except PipelineError as err:
        print(f"flows: {where}: budgets: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for line in format_bad_records(manifests[-1].source_stats.get("bad_records", {})):
        print(f"budgets: {line}")


if __name__ == "__main__":
    sys.exit(main())
