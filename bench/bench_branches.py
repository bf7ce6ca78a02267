"""Annealed evaluation branches vs separately trained runs vs mid-run points, AR and DLM.

Usage: python bench/bench_branches.py [--n-train 16384] [--epochs 8] [--at 2 4] [--kinds ar dlm]

For each objective, on one small budget (a learnable Markov token stream, the trainer tests' data):
1. one WSD run with ``eval.branches`` at epochs ``--at``: each branch cools down for 20% of the
   steps done and is evaluated (its true length is E x 1.2 up to rounding to whole steps);
2. one separate cosine run per branch, trained to exactly the branch's number of steps;
3. one cosine run of ``--epochs`` epochs evaluated mid-run at those same step counts.
Prints a Markdown table (validation loss, its SE, FLOPs) and the compute of the branched run vs
the separate runs it replaces. All runs share the evaluation noise (same seed), so differences
between rows of one objective are paired.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training_core"))
from branch_fixtures import compare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=16384)
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--at", type=float, nargs="+", default=[2.0, 4.0])
    ap.add_argument("--kinds", nargs="+", default=["ar", "dlm"])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    print("| objective | fork epoch | branch epoch | branch | separate cosine | mid-run cosine |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            extra: dict[str, Any] = {}
            if args.preset != "tiny":
                from training_core import model_preset

                extra["model"] = model_preset(args.preset, vocab_size=65, seq_len=32).model_dump()
            rows, costs = compare(
                kind,
                Path(tmp) / kind,
                args.n_train,
                args.epochs,
                args.at,
                extra,
                args.lr,
                args.batch,
            )
            for r in rows:
                print(
                    f"| {r['objective']} | {r['fork_epoch']:.3g} | {r['epoch']:.4g} "
                    f"| {r['branch']:.4f} ± {r['branch_se']:.4f} "
                    f"| {r['separate']:.4f} ± {r['separate_se']:.4f} "
                    f"| {r['mid_run']:.4f} ± {r['mid_run_se']:.4f} |"
                )
            print(f"costs {kind}: " + ", ".join(f"{k}={v:.4g}" for k, v in costs.items()))


if __name__ == "__main__":
    main()
