"""Annealed evaluation branches vs separately trained runs vs mid-run points, AR and DLM.

Usage: python bench/bench_branches.py [--n-train 4096] [--epochs 24] [--at 8 16] [--kinds ar dlm]

For each objective, on one small budget (a learnable Markov token stream, the trainer tests' data):
1. one WSD run with ``eval.branches`` at epochs ``--at``: each branch cools down for 20% of the
   steps done and is evaluated (its true length is E x 1.2 up to rounding to whole steps);
2. separate cosine and WSD (20% decay) runs per branch, trained to exactly its number of steps;
3. one cosine run of ``--epochs`` epochs evaluated mid-run at those same step counts.
Prints a Markdown table (validation loss ± its SE) and the compute of the branched run vs
the separate runs it replaces. All runs share the evaluation noise (same seed), so differences
between rows of one objective are paired.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training_core"))
from branch_fixtures import compare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=4096)
    ap.add_argument("--epochs", type=float, default=24.0)
    ap.add_argument("--at", type=float, nargs="+", default=[8.0, 16.0])
    ap.add_argument("--kinds", nargs="+", default=["ar", "dlm"])
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    print(
        "| objective | fork epoch | branch epoch | branch | separate cosine | separate WSD "
        "| mid-run cosine |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            rows, costs = compare(
                kind, Path(tmp) / kind, args.n_train, args.epochs, args.at, args.lr, args.batch
            )
            for r in rows:
                cells = [f"{r[k]:.4f} ± {r[k + '_se']:.4f}" for k in ("branch", "cosine", "wsd")]
                cells.append(f"{r['mid_run']:.4f} ± {r['mid_run_se']:.4f}")
                print(
                    f"| {kind} | {r['fork_epoch']:.3g} | {r['epoch']:.4g} | "
                    + " | ".join(cells)
                    + " |"
                )
            print(f"costs {kind}: " + ", ".join(f"{k}={v:.4g}" for k, v in costs.items()))


if __name__ == "__main__":
    main()
