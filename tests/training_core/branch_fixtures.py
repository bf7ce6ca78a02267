"""Branch vs separate runs vs mid-run points on a tiny budget, shared by test_branches_science.py
and bench/bench_branches.py.

For one objective: a WSD run with ``eval.branches`` at epochs ``at``; for each branch, separate
cosine and WSD (default 20% decay) runs trained to exactly the branch's number of steps; and one
cosine run as long as the branched one, evaluated mid-run at the branches' step counts. Every run
shares the seed, hence the data order and the evaluation noise: differences are paired.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from trainer_fixtures import tiny_config, tiny_data

from training_core import RunResult, train_run

EVALS = {"every_epochs": None, "at_start": False, "elbo_samples": 16, "val_max_tokens": 4096}


def _train(data: Any, root: Path, name: str, **cfg: Any) -> tuple[RunResult, pd.DataFrame, float]:
    t0 = time.perf_counter()
    result = train_run(tiny_config(data, **cfg), root / name)
    wall = time.perf_counter() - t0
    return result, pd.read_parquet(root / name / "evals.parquet"), wall


def compare(
    kind: str,
    root: Path,
    n_train: int,
    epochs: float,
    at: list[float],
    lr: float = 1e-2,
    batch: int = 8,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows (objective, fork and branch epochs, loss and SE of the branch, of the separate cosine
    and WSD runs and of the mid-run cosine point) and the compute of each way to get them."""
    root.mkdir(parents=True, exist_ok=True)
    data = tiny_data(root, n_train=n_train, n_val=4096)
    optim = {"warmup": 4, "lr": lr, "batch_size": batch}
    steps_per_epoch = (n_train // 32) / batch
    run = {"kind": kind, "epochs": epochs}
    branched, rows, wall = _train(
        data, root, "branched", **run, optim={**optim, "schedule": "wsd"},
        eval={**EVALS, "at_epochs": tuple(at), "branches": True},
    )  # fmt: skip
    branches = rows[rows["kind"] == "branch"].reset_index(drop=True)
    ends = [int(s) for s in branches["step"]]
    _, mid, _ = _train(
        data, root, "cosine_long", **run, optim={**optim, "schedule": "cosine"},
        eval={**EVALS, "at_epochs": tuple(s / steps_per_epoch for s in ends)},
    )  # fmt: skip
    mid = mid.set_index("step")
    out, separate_flops, separate_wall = [], branched.total_flops, 0.0
    for b, end in zip(branches.to_dict("records"), ends, strict=True):
        row = {"objective": kind, "fork_epoch": b["fork_step"] / steps_per_epoch}
        row |= {"epoch": b["epoch"], "branch": b["val_loss"], "branch_se": b["val_loss_se"]}
        for schedule in ("cosine", "wsd"):
            alone, frame, took = _train(
                data, root, f"{schedule}_{end}", kind=kind, epochs=end / steps_per_epoch,
                optim={**optim, "schedule": schedule}, eval=EVALS,
            )  # fmt: skip
            assert alone.steps == end
            row |= {
                schedule: frame["val_loss"].iloc[-1],
                f"{schedule}_se": frame["val_loss_se"].iloc[-1],
            }
            if schedule == "cosine":
                separate_flops, separate_wall = (
                    separate_flops + alone.total_flops,
                    separate_wall + took,
                )
        row |= {"mid_run": mid.loc[end, "val_loss"], "mid_run_se": mid.loc[end, "val_loss_se"]}
        out.append(row)
    costs = {
        "branched_flops": branched.total_flops + branched.branch_flops,
        "branch_flops": branched.branch_flops,
        "separate_flops": separate_flops,  # one run per point, the final point included
        "wall_branched_s": wall,
        "wall_separate_s": separate_wall,
    }
    return out, costs
