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
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training_core"))
from trainer_fixtures import tiny_config, tiny_data  # noqa: E402

from training_core import train_run  # noqa: E402


def compare(
    kind: str,
    root: Path,
    n_train: int,
    epochs: float,
    at: list[float],
    extra: dict[str, Any],
    lr: float = 3e-3,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows (kind, epoch, branch / separate cosine / mid-run cosine loss + SE) and costs."""
    root.mkdir(parents=True, exist_ok=True)
    data = tiny_data(root, n_train=n_train, n_val=4096)
    common = {"warmup": 4, "lr": lr, "batch_size": 16}
    evals = {"every_epochs": None, "at_start": False, "elbo_samples": 16, "val_max_tokens": 4096}
    branched_cfg = tiny_config(
        data,
        kind=kind,
        epochs=epochs,
        optim={**common, "schedule": "wsd"},
        eval={**evals, "at_epochs": tuple(at), "branches": True},
        **extra,
    )
    t0 = time.perf_counter()
    branched = train_run(branched_cfg, root / f"{kind}_branched")
    wall_branched = time.perf_counter() - t0
    rows = pd.read_parquet(root / f"{kind}_branched" / "evals.parquet")
    branches = rows[rows["kind"] == "branch"]
    n_windows = n_train // 32
    steps_per_epoch = n_windows / 16
    ends = [int(s) for s in branches["step"]]
    cosine_long = tiny_config(
        data,
        kind=kind,
        epochs=epochs,
        optim={**common, "schedule": "cosine"},
        eval={**evals, "at_epochs": tuple(s / steps_per_epoch for s in ends)},
        **extra,
    )
    train_run(cosine_long, root / f"{kind}_cos_long")
    mid = pd.read_parquet(root / f"{kind}_cos_long" / "evals.parquet").set_index("step")
    out, separate_flops, wall_separate = [], 0.0, 0.0
    for (_, b), end in zip(branches.iterrows(), ends, strict=True):
        alone_cfg = tiny_config(
            data,
            kind=kind,
            epochs=end * 16 / n_windows,
            optim={**common, "schedule": "cosine"},
            eval={**evals},
            **extra,
        )
        t0 = time.perf_counter()
        alone = train_run(alone_cfg, root / f"{kind}_cos_{end}")
        wall_separate += time.perf_counter() - t0
        separate_flops += alone.total_flops
        alone_row = pd.read_parquet(root / f"{kind}_cos_{end}" / "evals.parquet").iloc[-1]
        out.append(
            {
                "objective": kind,
                "fork_epoch": b["fork_step"] / steps_per_epoch,
                "epoch": b["epoch"],
                "branch": b["val_loss"],
                "branch_se": b["val_loss_se"],
                "separate": alone_row["val_loss"],
                "separate_se": alone_row["val_loss_se"],
                "mid_run": mid.loc[end, "val_loss"],
                "mid_run_se": mid.loc[end, "val_loss_se"],
            }
        )
    costs = {
        "branched_run_flops": branched.total_flops + branched.branch_flops,
        "branch_flops": branched.branch_flops,
        "main_flops": branched.total_flops,
        "separate_flops": separate_flops + branched.total_flops,  # the final point is a run too
        "wall_branched_s": wall_branched,
        "wall_separate_s": wall_separate,
    }
    return out, costs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=16384)
    ap.add_argument("--epochs", type=float, default=8.0)
    ap.add_argument("--at", type=float, nargs="+", default=[2.0, 4.0])
    ap.add_argument("--kinds", nargs="+", default=["ar", "dlm"])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--lr", type=float, default=3e-3)
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
                kind, Path(tmp) / kind, args.n_train, args.epochs, args.at, extra, args.lr
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
