"""Synthetic studies honour the per-run file contract of docs/design.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.laws import MUENNIGHOFF_2023, data_constrained_loss
from analysis.synthetic import (
    SyntheticStudySpec,
    eval_epochs,
    law_points,
    write_synthetic_study,
)
from training_core.config import RunConfig
from training_core.run_io import read_result

EVAL_COLS = [
    "run_id",
    "step",
    "tokens_seen",
    "epoch",
    "flops",
    "val_loss",
    "val_loss_se",
    "mc_acc",
    "mc_margin",
    "mc_n",
    "kind",
    "fork_step",
    "run_flops",
]
METRIC_COLS = [
    "run_id",
    "step",
    "tokens_seen",
    "epoch",
    "train_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
]
RESULT_KEYS = {
    "run_id",
    "status",
    "failure_reason",
    "objective",
    "model_name",
    "n_params",
    "n_params_nonembed",
    "n_params_active",
    "flops_per_token",
    "unique_tokens",
    "epochs",
    "seed",
    "budget_id",
    "steps",
    "tokens_seen",
    "total_flops",
    "final_val_loss",
    "best_val_loss",
    "final_mc_acc",
    "best_mc_acc",
    "wall_s",
    "tokens_per_s",
    "started_at",
    "finished_at",
    "code_version",
    "branch_flops",
}


def test_run_dirs_follow_the_contract(tmp_path: Path) -> None:
    spec = SyntheticStudySpec(unique_tokens=(10**8,), epochs=(1.0, 8.0), n_failed=1, noise=0.0)
    dirs = write_synthetic_study(tmp_path, spec)
    assert len(dirs) == 2 * 2 + 1
    for run_dir in dirs:
        # The production shape: a valid RunConfig and RunResult, read by training_core itself.
        config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        result = json.loads((run_dir / "result.json").read_text())
        assert read_result(run_dir).run_id == run_dir.name == result["run_id"] == config.run_id
        assert set(result) == RESULT_KEYS
        evals = pd.read_parquet(run_dir / "evals.parquet")
        assert list(evals.columns) == EVAL_COLS
        assert list(pd.read_parquet(run_dir / "metrics.parquet").columns) == METRIC_COLS
    failed = [d for d in dirs if "failed" in (d / "result.json").read_text()]
    assert len(failed) == 1 and np.isnan(
        pd.read_parquet(failed[0] / "evals.parquet").val_loss.iloc[-1]
    )
    # Noise-free AR: the final loss is the law; mid-run losses sit above it (LR not annealed).
    ar = next(
        d for d in dirs if json.loads((d / "config.json").read_text())["objective"]["kind"] == "ar"
    )
    ev = pd.read_parquet(ar / "evals.parquet")
    law = data_constrained_loss(10**8, ev["tokens_seen"], 10**8, MUENNIGHOFF_2023)
    assert np.isclose(ev["val_loss"].iloc[-1], law[-1])
    assert (ev["val_loss"].iloc[:-1] > law[:-1] * 1.001).all()


def test_law_points_and_eval_epochs() -> None:
    assert eval_epochs(1.0, 6).tolist() == [0.25, 0.5, 1.0]
    e = eval_epochs(16.0, 6)
    assert e[0] == 0.25 and e[-1] == 16.0 and (e <= 1).sum() == 3
    pts = law_points(MUENNIGHOFF_2023, (1e8,), (1e9,), (1.0, 4.0), seeds=(0, 1), noise=0.0)
    assert len(pts) == 4 and pts["run_id"].nunique() == 4  # one final point per run
    assert np.allclose(
        pts["loss"], data_constrained_loss(1e8, pts["tokens"], 1e9, MUENNIGHOFF_2023)
    )


def test_import_analysis_stays_light() -> None:
    code = (
        "import sys, analysis; "
        "print(sorted(m for m in ('plotly', 'scipy', 'duckdb') if m in sys.modules)); "
        "analysis.LawParams"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "[]"
