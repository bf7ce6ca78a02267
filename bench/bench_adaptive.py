"""Adaptive sweep vs the full grid on planted laws (analysis.adaptive_sim): compute used,
crossover interval width, coverage of the true crossover.

    PYTHONPATH=. .venv/bin/python bench/bench_adaptive.py [--reps 20] [--budgets 1e9] [--seeds 3]

Each repetition draws the full grid (every run) and takes its widest relative interval
width (hi/lo - 1) as the target; the adaptive sweep, from independent draws of the same laws,
is capped at half the grid's compute. Prints one line per repetition and a summary table;
numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402

from analysis.adaptive_loop import AdaptiveConfig  # noqa: E402
from analysis.adaptive_sim import PlantedStudy, adaptive, full_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--budgets", default="1e9", help="unique-token budgets, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting in the grid")
    args = parser.parse_args()
    study = PlantedStudy(
        unique_tokens=tuple(int(float(u)) for u in args.budgets.split(",")),
        seeds=tuple(range(args.seeds)),
    )
    truth = {u: study.truth(u) for u in study.unique_tokens}
    print(
        f"planted study: N={study.n_params:g}, U={list(study.unique_tokens)}, epochs "
        f"{list(study.epochs)}, seeds {list(study.seeds)}, seed noise {study.seed_noise}, "
        f"true crossovers {', '.join(f'{t:.1f}' for t in truth.values())} epochs"
    )
    rows, t0 = [], time.perf_counter()
    for rep in range(args.reps):
        full, grid_flops = full_grid(study, AdaptiveConfig(target_width=1.0), 1000 + rep)
        target = max(iv.rel_width for iv in full.values())
        res = adaptive(study, AdaptiveConfig(target_width=target, compute_cap=grid_flops / 2), rep)
        row = {
            "share": res.compute_spent / grid_flops,
            "w_full": target,
            "w_adapt": max(iv.rel_width for iv in res.intervals.values()),
            "cov_full": all(iv.lo <= truth[g[1]] <= iv.hi for g, iv in full.items()),
            "cov_adapt": all(iv.lo <= truth[g[1]] <= iv.hi for g, iv in res.intervals.items()),
            "stop": res.stop_reason.split(":")[0],
            "steps": len(res.steps),
        }
        rows.append(row)
        print(
            f"rep {rep:2d}: compute {100 * row['share']:5.1f}% of grid, width full "
            f"{row['w_full']:.3f} adaptive {row['w_adapt']:.3f}, covers truth full "
            f"{row['cov_full']} adaptive {row['cov_adapt']}, {row['steps']} steps, "
            f"stop: {row['stop']}",
            flush=True,
        )
    n = len(rows)
    reached = sum(r["w_adapt"] <= r["w_full"] for r in rows)
    print(
        "\n| design | compute (share of full grid, median [max]) | widest interval hi/lo-1 "
        "(median) | covers the true crossover | reached the full grid's width |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| full grid | 100% | {statistics.median(r['w_full'] for r in rows):.3f} | "
        f"{sum(r['cov_full'] for r in rows)}/{n} | - |"
    )
    shares = [r["share"] for r in rows]
    print(
        f"| adaptive | {100 * statistics.median(shares):.1f}% [{100 * max(shares):.1f}%] | "
        f"{statistics.median(r['w_adapt'] for r in rows):.3f} | "
        f"{sum(r['cov_adapt'] for r in rows)}/{n} | {reached}/{n} |"
    )
    print(f"\n{n} repetitions in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
