"""Fixture study builders: run dirs in the per-run file contract (docs/design.md).

``small_study`` is tiny and hand-checkable: one model, U = 1000, epochs {1, 2, 4}, seed 0, with
final (val_loss, mc_acc) per run:

    epochs   AR            DLM
    1        3.0, 0.30     3.2, 0.28
    2        2.8, 0.35     2.9, 0.33
    4        2.9, 0.36     2.7, 0.34

so DLM beats AR on loss from 4 epochs on (after AR at 2) and never on accuracy. Each run has a
mid-run evaluation (loss + 0.5, acc - 0.05) before its final one. Extra: one failed AR run
(2 evaluations, the last NaN) and one completed DLM run at seed 1 whose mid evaluation is NaN.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

FINALS = {
    ("ar", 1.0): (3.0, 0.30),
    ("ar", 2.0): (2.8, 0.35),
    ("ar", 4.0): (2.9, 0.36),
    ("dlm", 1.0): (3.2, 0.28),
    ("dlm", 2.0): (2.9, 0.33),
    ("dlm", 4.0): (2.7, 0.34),
}


def make_run(
    root: Path,
    run_id: str,
    objective: str,
    epochs: float,
    seed: int,
    evals: list[tuple[int, float, float, float]],
    *,
    status: str = "completed",
    unique_tokens: int = 1000,
    model_name: str = "m",
    n_params: int = 5000,
    config_extra: dict | None = None,
    write_result: bool = True,
) -> Path:
    """One run dir; ``evals`` rows are (step, epoch, val_loss, mc_acc)."""
    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "model": {"name": model_name, "depth": 2, "d_model": 32},
        "objective": {"kind": objective},
        "optim": {"lr": 0.001},
        "eval": {"every_steps": 10},
        "data": {
            "budget_id": f"b{unique_tokens}",
            "unique_tokens": unique_tokens,
            "train_files": ["a.ds", "b.ds"],
        },
        "epochs": epochs,
        "seed": seed,
    } | (config_extra or {})
    (run_dir / "config.json").write_text(json.dumps(config))
    frame = pd.DataFrame(evals, columns=["step", "epoch", "val_loss", "mc_acc"])
    tokens = (frame["epoch"] * unique_tokens).astype("int64")
    pd.DataFrame(
        {
            "run_id": run_id,
            "step": frame["step"],
            "tokens_seen": tokens,
            "epoch": frame["epoch"],
            "flops": 6.0 * n_params * tokens,
            "val_loss": frame["val_loss"],
            "val_loss_se": 0.01,
            "mc_acc": frame["mc_acc"],
            "mc_margin": 0.1,
            "mc_n": 500,
        }
    ).to_parquet(run_dir / "evals.parquet", index=False)
    pd.DataFrame(
        {
            "run_id": run_id,
            "step": frame["step"],
            "tokens_seen": tokens,
            "epoch": frame["epoch"],
            "train_loss": frame["val_loss"] - 0.1,
            "lr": 0.001,
            "grad_norm": 1.0,
            "tokens_per_s": 100.0,
        }
    ).to_parquet(run_dir / "metrics.parquet", index=False)
    if write_result:
        result = {
            "run_id": run_id,
            "status": status,
            "failure_reason": "non-finite loss at step 20" if status == "failed" else None,
            "objective": objective,
            "model_name": model_name,
            "n_params": n_params,
            "n_params_nonembed": n_params // 2,
            "n_params_active": n_params,
            "flops_per_token": 6.0 * n_params,
            "unique_tokens": unique_tokens,
            "epochs": epochs,
            "seed": seed,
            "budget_id": f"b{unique_tokens}",
            "steps": int(frame["step"].max()),
            "tokens_seen": int(tokens.max()),
            "total_flops": float(6.0 * n_params * tokens.max()),
            "final_val_loss": None,
            "best_val_loss": None,
            "final_mc_acc": None,
            "best_mc_acc": None,
            "wall_s": 1.5,
            "tokens_per_s": 100.0,
            "started_at": "2026-01-01T00:00:00",
            "finished_at": "2026-01-01T00:00:02",
            "code_version": "test",
        }
        (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def build_small_study(root: Path) -> Path:
    for (obj, epochs), (loss, acc) in FINALS.items():
        make_run(
            root,
            f"{obj}-e{int(epochs)}",
            obj,
            epochs,
            0,
            [(10, epochs / 2, loss + 0.5, acc - 0.05), (20, epochs, loss, acc)],
        )
    make_run(
        root,
        "ar-failed",
        "ar",
        4.0,
        1,
        [(10, 2.0, 3.1, 0.3), (20, 4.0, float("nan"), 0.3)],
        status="failed",
    )
    make_run(root, "dlm-nan", "dlm", 4.0, 1, [(10, 2.0, float("nan"), 0.3), (20, 4.0, 2.6, 0.35)])
    return root
