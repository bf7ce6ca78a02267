"""Orchestration overhead: the same N tiny runs through Prefect + Ray vs `train_run` in a loop.

    python -m bench.bench_flows [--epochs 3 4 5] [--repeat 1]

Both paths train the same configs one at a time on one thread (Ray with num_cpus=1), so the
difference is orchestration: Prefect flow and temporary server, Ray start-up, task dispatch,
progress reporting. A rerun of the finished sweep (every run skipped) measures the fixed cost;
the rest divided by N is the marginal cost per run. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.settings import apply_offline_defaults

SMOKE_OVERRIDES = {"name": "bench-flows", "objectives": ["ar", "dlm"], "seeds": [0]}


def _write_spec(path: Path, epochs: list[float]) -> Path:
    from flows.spec import preset_path

    data = yaml.safe_load(preset_path("smoke").read_text())
    data.update(SMOKE_OVERRIDES, epochs=epochs)
    data["budgets"]["sizes"] = data["budgets"]["sizes"][-1:]  # one budget: runs differ by epochs
    path.write_text(yaml.safe_dump(data))
    return path


def _direct(spec_path: Path, home: Path) -> tuple[float, int]:
    """Train every run of the grid with train_run in this process; returns (seconds, n runs)."""
    import torch

    from flows.grid import expand_grid
    from flows.spec import load_spec
    from pipeline import build_budgets
    from training_core import train_run

    torch.set_num_threads(1)
    spec = load_spec(spec_path)
    runs = expand_grid(spec, build_budgets(spec.budgets, home / "budgets"))
    start = time.perf_counter()
    for run in runs:
        train_run(run.config, home / "direct" / run.run_id)
    return time.perf_counter() - start, len(runs)


def _prefect_startup() -> float:
    """Seconds for the first flow call of a process: it starts Prefect's temporary server
    (a `flows server` or PREFECT_API_URL avoids this)."""
    from prefect import flow

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    start = time.perf_counter()
    noop()
    return time.perf_counter() - start


def _worker_pids(home: Path) -> int:
    import json

    markers = (home / "bench-flows" / "runs").glob("*/worker.json")
    return len({json.loads(m.read_text())["pid"] for m in markers})


def _orchestrated(spec_path: Path, home: Path) -> float:
    from flows.flows import sweep_flow

    start = time.perf_counter()
    outcomes = sweep_flow(config=str(spec_path), home=str(home), num_cpus=1)
    elapsed = time.perf_counter() - start
    assert all(o["status"] in ("completed", "skipped") for o in outcomes), outcomes
    return elapsed


def _ray_startup(temp: Path) -> float:
    """Seconds to start and stop an embedded one-CPU Ray (paid once per sweep)."""
    import ray

    from flows.dispatch import connect_ray

    start = time.perf_counter()
    connect_ray(None, num_cpus=1, temp_dir=temp)
    ray.shutdown()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=float, nargs="+", default=[3, 4, 5])
    args = parser.parse_args(argv)
    apply_offline_defaults()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="bench-flows-"))
    os.environ["PREFECT_HOME"] = str(tmp / "prefect-home")
    try:
        spec_path = _write_spec(tmp / "study.yaml", args.epochs)
        home = tmp / "home"
        _direct(spec_path, home)  # warm-up: budgets built, imports and kernels loaded
        shutil.rmtree(home / "direct")
        direct_s, n = _direct(spec_path, home)
        server_s = _prefect_startup()
        full_s = _orchestrated(spec_path, home)
        n_workers = _worker_pids(home)
        # Every run skipped: Prefect's fixed cost (no Ray start: nothing to dispatch), plus Ray's.
        prefect_s = _orchestrated(spec_path, home)
        ray_s = _ray_startup(Path(tempfile.mkdtemp(prefix="ray-", dir=tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    overhead = full_s - direct_s
    fixed_s = prefect_s + ray_s
    marginal = max(overhead - fixed_s, 0.0) / n
    rows = [
        ("runs (N)", f"{n}"),
        ("direct train_run loop, s", f"{direct_s:.1f}"),
        ("Prefect temp server start (once per process; 0 with a server), s", f"{server_s:.1f}"),
        ("Prefect + Ray sweep, s", f"{full_s:.1f}"),
        ("overhead, s (ratio)", f"{overhead:.1f} ({full_s / direct_s:.2f}x)"),
        ("fixed: Prefect flow, all runs skipped, s", f"{prefect_s:.1f}"),
        ("fixed: embedded Ray start + stop, s", f"{ray_s:.1f}"),
        ("Ray worker processes used", f"{n_workers}"),
        ("per-run overhead, all in (overhead / N), s", f"{overhead / n:.2f}"),
        ("per-run marginal overhead ((overhead - fixed) / N), s", f"{marginal:.2f}"),
        ("marginal overhead for a 60 s run", f"{100 * marginal / 60:.1f}%"),
    ]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
