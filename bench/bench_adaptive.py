"""Adaptive sweep vs the full grid on planted laws (analysis.adaptive_sim): compute used,
crossover interval width, coverage of the true crossover.

    PYTHONPATH=. .venv/bin/python bench/bench_adaptive.py [--reps 60] [--budgets 1e9,1e8]
        [--grid-draws 200] [--confirm 1] [--fixed-designs 40]

Per budget (each its own one-budget study): the comparator is the full grid (8 epoch settings
4..512 x 3 seeds x AR/DLM); its expected width is the median widest interval width (hi/lo - 1)
over ``--grid-draws`` independent draws, and that is the adaptive sweep's target. Each
repetition runs the adaptive sweep from an independent draw, on the pool (8 seeds per setting,
half-octave settings), capped at half the grid's compute. Prints one line per repetition and a
summary table; numbers go to bench/RESULTS.md. ``--fixed-designs N`` adds, per budget, how often
a few fixed designs under the cap would pass the stop rule (why U = 1e8 is hard: RESULTS.md).
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

from analysis.adaptive import AcquisitionConfig  # noqa: E402
from analysis.adaptive_loop import (  # noqa: E402
    AdaptiveConfig,
    group_intervals,
    narrow_enough,
    seed_design,
)
from analysis.adaptive_sim import PlantedStudy, SimulatedSweep, adaptive, full_grid  # noqa: E402
from analysis.binomial import clopper_pearson  # noqa: E402


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


# Fixed designs beyond the seed design (epochs -> seeds per objective), for --fixed-designs.
FIXED = {
    "64, 128, 256 x 3 seeds (the old path)": {64.0: 3, 128.0: 3, 256.0: 3},
    "64, 128, 256 x 2 seeds": {64.0: 2, 128.0: 2, 256.0: 2},
    "64 x 2, 128 x 3, 256 x 3": {64.0: 2, 128.0: 3, 256.0: 3},
    "64 x 2, 128 x 2, 256 x 4": {64.0: 2, 128.0: 2, 256.0: 4},
    "64, 128, 181, 256 x 2 seeds": {64.0: 2, 128.0: 2, 181.02: 2, 256.0: 2},
    "64 x 2, 128 x 4, 256 x 4": {64.0: 2, 128.0: 4, 256.0: 4},
}


def fixed_designs(u: int, draws: int, target: float) -> None:
    """Each fixed design (seed design + ``FIXED``) over ``draws`` independent draws: its share
    of the grid's compute and how often the stop rule would accept its interval."""
    study = PlantedStudy(unique_tokens=(u,))
    pool, truth, cfg = study.pool(), study.truth(u), AdaptiveConfig(target_width=target)
    base = {c.key for c in seed_design(pool, cfg)}
    print(
        f"\n| U={u:.0e} design beyond the seed design | compute | accepted at width <= "
        f"{target:.3f} | open | covers | median width |\n|---|---|---|---|---|---|"
    )
    for name, extra in FIXED.items():
        runs = [c for c in pool if c.key in base or c.seed < extra.get(c.epochs, 0)]
        accepted = open_ = covered = 0
        widths = []
        for d in range(draws):
            sweep = SimulatedSweep(study, np.random.default_rng(20_000 + d))
            sweep.run(runs)
            ivs = group_intervals(sweep.observe(), [runs[0].group], cfg)
            iv = ivs[runs[0].group]
            accepted += len(narrow_enough(sweep.observe(), ivs, pool, cfg))
            open_ += not np.isfinite(iv.hi)
            covered += iv.lo <= truth <= iv.hi
            widths.append(iv.rel_width)
        share = sum(c.flops for c in runs) / study.grid_flops()
        print(
            f"| {name} | {100 * share:.1f}% | {accepted}/{draws} | {open_}/{draws} | "
            f"{covered}/{draws} | {np.median(widths):.3f} |",
            flush=True,
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
    parser.add_argument(
        "--fixed-designs", type=int, default=0, help="draws per fixed design (0: skip)"
    )
    parser.add_argument("--verbose", action="store_true", help="print every rep's runs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    results = [bench_budget(int(float(u)), args) for u in args.budgets.split(",")]
    table(results, args.grid_draws)
    for head, _ in results if args.fixed_designs else []:
        fixed_designs(head["u"], args.fixed_designs, head["target"])
    print(f"\nin {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
