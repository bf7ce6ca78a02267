"""Analysis benchmark: law fit + bootstrap for a 64-run study (4 sizes x 4 budgets x 4 epoch
counts) and over 1,000 runs, crossovers over 1,000 runs, and DuckDB ingest of 1M metric rows
(first ingest and an idempotent re-ingest).

    PYTHONPATH=. .venv/bin/python bench/bench_analysis.py [--runs 1000] [--metric-rows 1000]

Prints one line per measurement; numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os

# One BLAS thread: L-BFGS-B's BLAS calls fight over a small loaded machine otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from analysis.crossover import crossovers  # noqa: E402
from analysis.fits import fit_data_constrained_law  # noqa: E402
from analysis.laws import MUENNIGHOFF_2023  # noqa: E402
from analysis.store import ResultsStore  # noqa: E402
from analysis.synthetic import SyntheticStudySpec, law_points, write_synthetic_study  # noqa: E402


def _time_fit(points, n_boot: int) -> tuple[float, float, object]:
    start = time.perf_counter()
    fit_data_constrained_law(points, "ar", n_boot=0)
    point_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    fit = fit_data_constrained_law(points, "ar", n_boot=n_boot)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  (fit+bootstrap CPU time {cpu:.2f} s; wall differs on a loaded machine)")
    return point_s, wall, fit


def bench_law_fit_64(n_boot: int) -> None:
    # The design: 4 sizes x 4 budgets x 4 epoch counts = 64 runs, final losses, 2% noise.
    points = law_points(
        MUENNIGHOFF_2023,
        (1e7, 3e7, 1e8, 3e8),
        (3e8, 1e9, 3e9, 1e10),
        (1, 4, 16, 64),
        noise=0.02,
        seed=0,
    )
    point_s, total_s, fit = _time_fit(points, n_boot)
    print(
        f"law fit 64 runs: point_fit_s={point_s:.2f} fit+{n_boot}_bootstrap_s={total_s:.2f} "
        f"R_D*={fit.estimates['rd_star'].describe()}"
    )


def bench_law_fit(n_boot: int) -> None:
    # 10 sizes x 10 budgets x 10 epoch settings = 1,000 runs, one final loss each.
    sizes = tuple(float(x) for x in (1e7, 2e7, 3e7, 5e7, 7e7, 1e8, 2e8, 3e8, 5e8, 1e9))
    budgets = tuple(float(x) for x in (1e9, 2e9, 3e9, 5e9, 7e9, 1e10, 2e10, 3e10, 5e10, 1e11))
    epochs = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
    points = law_points(MUENNIGHOFF_2023, sizes, budgets, epochs, noise=0.003, seed=0)
    point_s, total_s, fit = _time_fit(points, n_boot)
    print(
        f"law fit: runs={points['run_id'].nunique()} points={len(points)} "
        f"point_fit_s={point_s:.2f} fit+{n_boot}_bootstrap_s={total_s:.2f} "
        f"R_D*={fit.estimates['rd_star'].describe()}"
    )


def bench_study(n_runs_per_obj_model: int, metric_rows: int, n_boot: int) -> None:
    spec = SyntheticStudySpec(
        n_params=(10_000_000, 30_000_000, 100_000_000, 300_000_000, 1_000_000_000),
        unique_tokens=tuple(int(x) for x in (1e8, 2e8, 3e8, 5e8, 7e8, 1e9, 2e9, 3e9, 5e9, 1e10)),
        epochs=(1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0)[:n_runs_per_obj_model],
        metric_rows_per_run=metric_rows,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        dirs = write_synthetic_study(root, spec)
        write_s = time.perf_counter() - start
        store = ResultsStore(root / "results.duckdb")
        start = time.perf_counter()
        with store:
            stats = store.ingest_runs_root(root / "runs")
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        with store:
            store.ingest_runs_root(root / "runs")
        reingest_s = time.perf_counter() - start
        rows = store.query("SELECT count(*) AS n FROM metrics")["n"].iloc[0]
        start = time.perf_counter()
        store.query("SELECT * FROM crossover_measured")
        view_s = time.perf_counter() - start
        evals = store.query("SELECT * FROM eval_points")
        start = time.perf_counter()
        table = crossovers(evals, n_boot=n_boot)
        cross_s = time.perf_counter() - start
        size_mb = (root / "results.duckdb").stat().st_size / 1e6
    print(f"study: runs={len(dirs)} write_s={write_s:.1f}")
    print(
        f"ingest: metric_rows={stats.metric_rows} eval_rows={stats.eval_rows} "
        f"first_s={ingest_s:.2f} ({stats.metric_rows / ingest_s:,.0f} rows/s) "
        f"reingest_s={reingest_s:.2f} rows_after_reingest={rows} db_MB={size_mb:.0f}"
    )
    print(f"crossover_measured view: {view_s * 1e3:.0f} ms")
    print(f"crossovers: groups={len(table) // 2} metrics=2 n_boot={n_boot} total_s={cross_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--law-boot", type=int, default=100)
    parser.add_argument("--cross-boot", type=int, default=200)
    parser.add_argument("--epochs-per-group", type=int, default=10)
    parser.add_argument("--metric-rows", type=int, default=1000)
    parser.add_argument("--only-64", action="store_true", help="only the 64-run law fit")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}"
    )
    bench_law_fit_64(args.law_boot)
    if not args.only_64:
        bench_law_fit(args.law_boot)
    if not args.only_64:
        bench_study(args.epochs_per_group, args.metric_rows, args.cross_boot)


if __name__ == "__main__":
    main()
