"""Coverage of the frontier C_crit interval (analysis.frontier_table) on planted laws
(analysis.frontier_coverage): how often the reported 95% interval holds the true C_crit.

    PYTHONPATH=. nice .venv/bin/python bench/bench_frontier_coverage.py \
        [--design full|minimal] [--reps 40] [--n-boot 50] [--csv out.csv]

Each repetition draws a synthetic study (seed noise on every run's final loss), fits both laws
with their run bootstrap and profiles, and builds the per-budget frontier table exactly as a
study does. Prints one line per repetition and the summary (per budget: coverage of the
reported interval and of its bootstrap and profile parts, with a Wilson 95% interval on the
coverage); ``--csv`` keeps every row, written after each repetition. Numbers go to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import pandas as pd  # noqa: E402

from analysis.frontier_coverage import CoverageDesign, simulate_once, summarize  # noqa: E402

DESIGNS = {
    # the design of tests/analysis/test_frontier_table.py, with two seeds per setting
    "full": {},
    # the least a frontier C_crit is identified with: 3 sizes spanning 10x, one seed
    "minimal": {
        "n_params": (3e7, 1e8, 3e8),
        "epochs": (1.0, 4.0, 16.0, 64.0),
        "seeds": (0,),
        "label": "3 sizes x 3 budgets x 4 epochs x 1 seed",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", choices=sorted(DESIGNS), default="full")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--start", type=int, default=0, help="first repetition's seed")
    parser.add_argument("--n-boot", type=int, default=50)
    parser.add_argument("--noise", type=float, default=0.005)
    parser.add_argument("--csv", default="", help="write every row here after each repetition")
    args = parser.parse_args()
    design = CoverageDesign(n_boot=args.n_boot, noise=args.noise, **DESIGNS[args.design])
    truth = design.truth()
    print(
        f"design {design.label}; sizes {design.n_params}, budgets {design.unique_tokens}, "
        f"epochs {design.epochs}; seed noise {design.noise}; {design.n_boot} bootstrap draws; "
        f"true C_crit {[f'{t:.4g}' for t in truth]}",
        flush=True,
    )
    frames = []
    for rep in range(args.start, args.start + args.reps):
        t0 = time.perf_counter()
        frame = simulate_once(design, rep, truth)
        frames.append(frame)
        cells = " ".join(
            f"[{r.lo:.3g}, {r.hi:.3g}]{'' if r.covered else ' MISS'}" for r in frame.itertuples()
        )
        print(f"rep {rep}: {time.perf_counter() - t0:.0f} s  {cells}", flush=True)
        if args.csv:
            pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)
    print(summarize(pd.concat(frames, ignore_index=True)).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
