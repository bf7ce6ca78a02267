"""Per-run files: exact parquet schemas, atomic rewrites, result.json round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from training_core.run_io import (
    EVALS_SCHEMA,
    METRICS_SCHEMA,
    RunResult,
    read_result,
    read_rows,
    write_json,
    write_result,
    write_rows,
)

DESIGN_METRICS = "run_id step tokens_seen epoch train_loss lr grad_norm tokens_per_s".split()
DESIGN_EVALS = (
    "run_id step tokens_seen epoch flops val_loss val_loss_se mc_acc mc_margin mc_n "
    "kind fork_step run_flops".split()
)


def test_schemas_match_design() -> None:
    assert METRICS_SCHEMA.names == DESIGN_METRICS
    assert EVALS_SCHEMA.names == DESIGN_EVALS


def test_write_rows_rewrites_with_exact_columns(tmp_path: Path) -> None:
    path = tmp_path / "evals.parquet"
    write_rows(path, [{"run_id": "a", "step": 0, "val_loss": 1.5}], EVALS_SCHEMA)
    write_rows(path, [{"run_id": "a", "step": 0}, {"run_id": "a", "step": 3}], EVALS_SCHEMA)
    table = pq.read_table(path)
    assert table.schema == EVALS_SCHEMA
    assert [r["step"] for r in read_rows(path)] == [0, 3]
    assert read_rows(path)[0]["val_loss"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["evals.parquet"]  # no temp files left


def _result(**kw: object) -> RunResult:
    base = dict(
        run_id="abc",
        status="completed",
        objective="ar",
        model_name="tiny",
        n_params=10,
        n_params_nonembed=5,
        n_params_active=10,
        flops_per_token=60.0,
        unique_tokens=100,
        epochs=2.0,
        seed=0,
        budget_id="b",
        steps=4,
        tokens_seen=200,
        total_flops=1.2e4,
        wall_s=1.0,
        tokens_per_s=200.0,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        code_version="unknown",
    )
    return RunResult(**{**base, **kw})


def test_result_round_trip(tmp_path: Path) -> None:
    result = _result(final_val_loss=2.5, best_val_loss=2.0)
    write_result(tmp_path, result)
    assert read_result(tmp_path) == result
    assert read_result(tmp_path / "missing") is None
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"


def test_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not (tmp_path / "x.json").exists()
