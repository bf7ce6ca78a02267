"""Branch vs separate-run vs mid-run comparison on a tiny budget, shared by
test_branches_science.py and bench/bench_branches.py (which documents the three kinds of run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from trainer_fixtures import tiny_config, tiny_data

from training_core import train_run


def compare(
    kind: str,
    root: Path,
    n_train: int,
    epochs: float,
    at: list[float],
    extra: dict[str, Any],
    lr: float = 3e-3,
    batch: int = 16,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows (kind, epoch, branch / separate cosine / mid-run cosine loss + SE) and costs."""
    root.mkdir(parents=True, exist_ok=True)
    data = tiny_data(root, n_train=n_train, n_val=4096)
    common = {"warmup": 4, "lr": lr, "batch_size": batch}
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
    steps_per_epoch = n_windows / batch
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
            epochs=end * batch / n_windows,
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
