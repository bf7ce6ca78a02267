"""Adaptive sweep vs the full grid on planted laws (analysis.adaptive_sim): compute used,
crossover interval width, coverage of the true crossover.

    PYTHONPATH=. .venv/bin/python bench/bench_adaptive.py [--reps 60] [--budgets 1e9,1e8]
        [--grid-draws 200] [--confirm 1]

Per budget (each its own one-budget study): the comparator is the full grid (8 epoch settings
4..512 x 3 seeds x AR/DLM); its expected width is the median widest interval width (hi/lo - 1)
over ``--grid-draws`` independent draws, and that is the adaptive sweep's target. Each
repetition runs the adaptive sweep from an independent draw, on the pool (8 seeds per setting,
half-octave settings), capped at half the grid's compute. Prints one line per repetition and a
summary table; numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import beta  # noqa: E402

from analysis.adaptive import AcquisitionConfig  # noqa: E402
from analysis.adaptive_loop import AdaptiveConfig  # noqa: E402
from analysis.adaptive_sim import PlantedStudy, adaptive, full_grid  # noqa: E402


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact 95% binomial interval of a coverage count."""
    lo = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    hi = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def comparator(study: PlantedStudy, draws: int) -> tuple[list[float], int]:
    """Widest width and coverage of ``draws`` independent draws of the full grid."""
    truth = {u: study.truth(u) for u in study.unique_tokens}
    widths, covered = [], 0
    for d in range(draws):
        full = full_grid(study, AdaptiveConfig(target_width=1.0), 10_000 + d)
        widths.append(max(iv.rel_width for iv in full.values()))
        covered += all(iv.lo <= truth[g[1]] <= iv.hi for g, iv in full.items())
    return widths, covered


def bench_budget(u: int, args: argparse.Namespace) -> dict:
    study = PlantedStudy(unique_tokens=(u,), pool_seeds=args.pool_seeds)
    truth = study.truth(u)
    grid_flops = study.grid_flops()
    widths, grid_cov = comparator(study, args.grid_draws)
    target = float(np.median(widths))
    print(
        f"\nU={u:.0e}: true crossover {truth:.1f} epochs; full grid over {args.grid_draws} "
        f"draws: median width {target:.3f} (10-90%: {np.quantile(widths, 0.1):.3f}-"
        f"{np.quantile(widths, 0.9):.3f}), covers {grid_cov}/{args.grid_draws}",
        flush=True,
    )
    acq = AcquisitionConfig(min_seeds=args.min_seeds, new_seeds=args.new_seeds)
    cfg = AdaptiveConfig(
        target_width=target,
        compute_cap=grid_flops / 2,
        confirm_steps=args.confirm,
        acquisition=acq,
    )
    rows = []
    for rep in range(args.reps):
        res = adaptive(study, cfg, rep)
        iv = next(iter(res.intervals.values()))
        w = iv.rel_width
        rows.append(
            {
                "share": res.compute_spent / grid_flops,
                "width": w,
                "covers": iv.lo <= truth <= iv.hi,
                # The stop rule's verdict: width <= target and not read across a coarse gap
                # (a width under the target read across one is refused, and under-covers).
                "reached": res.stop_reason.startswith("target reached"),
                # Per-draw comparison: the share of the grid's draws at least this wide.
                "beats_draws": float(np.mean(np.asarray(widths) >= w)),
                "stop": res.stop_reason.split(":")[0],
            }
        )
        r = rows[-1]
        runs = ", ".join(s.runs.replace(f"/U{u:.3g}", "") for s in res.steps if s.runs)
        print(
            f"rep {rep:2d}: {100 * r['share']:5.1f}% of grid, width {w:.3f} "
            f"[{iv.lo:.1f}, {iv.hi:.1f}], covers {r['covers']}, stop: {r['stop']}"
            + (f" | {runs}" if args.verbose else ""),
            flush=True,
        )
    return {"u": u, "truth": truth, "target": target, "widths": widths, "grid_cov": grid_cov}, rows


def table(results: list[tuple[dict, list[dict]]], draws: int) -> None:
    print(
        "\n| U | design | compute (share of grid: median [max]) | widest width hi/lo - 1 "
        "(median) | covers the truth (95% CI) | reached grid's expected (stop rule) | width <= a "
        "grid draw's | stop |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for head, rows in results:
        lo, hi = clopper_pearson(head["grid_cov"], draws)
        print(
            f"| {head['u']:.0e} | full grid ({draws} draws) | 100% | {head['target']:.3f} | "
            f"{head['grid_cov']}/{draws} ({100 * lo:.0f}-{100 * hi:.0f}%) | - | - | - |"
        )
        n, k = len(rows), sum(r["covers"] for r in rows)
        lo, hi = clopper_pearson(k, n)
        shares = [r["share"] for r in rows]
        stops = Counter(r["stop"] for r in rows)
        print(
            f"| {head['u']:.0e} | adaptive ({n} reps) | {100 * statistics.median(shares):.1f}% "
            f"[{100 * max(shares):.1f}%] | {statistics.median(r['width'] for r in rows):.3f} | "
            f"{k}/{n} ({100 * lo:.0f}-{100 * hi:.0f}%) | {sum(r['reached'] for r in rows)}/{n} "
            f"| {100 * statistics.mean(r['beats_draws'] for r in rows):.0f}% | "
            + ", ".join(f"{s} {c}" for s, c in stops.most_common())
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--budgets", default="1e9,1e8", help="unique-token budgets, one study each")
    parser.add_argument("--grid-draws", type=int, default=200)
    parser.add_argument("--pool-seeds", type=int, default=8)
    parser.add_argument("--confirm", type=int, default=1, help="confirming steps before a stop")
    parser.add_argument("--min-seeds", type=int, default=AcquisitionConfig.min_seeds)
    parser.add_argument("--new-seeds", type=int, default=AcquisitionConfig.new_seeds)
    parser.add_argument("--verbose", action="store_true", help="print every rep's runs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = [bench_budget(int(float(u)), args) for u in args.budgets.split(",")]
    table(results, args.grid_draws)
    print(f"\nin {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
