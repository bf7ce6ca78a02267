"""A run directory on disk: its file names, the Parquet schemas, ``RunResult`` and the writers.

``<home>/<study>/runs/<run_id>/`` holds ``config.json`` (the resolved RunConfig),
``metrics.parquet`` and ``evals.parquet`` (atomic rewrites), ``result.json`` (``RunResult``),
``plan.json`` (the spec hashes that planned the run), ``failure.json`` (its worker died past the
retries), ``worker.json``, ``torchrun.log`` and ``ckpt/``. One writer per run directory (the
trainer's rank 0; the dispatcher for plan/failure/worker); readers (analysis/, flows status) may
read at any time and always see a complete file because every write goes to a temp file that then
replaces the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

METRICS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("epoch", pa.float64()),
        ("train_loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("tokens_per_s", pa.float64()),
    ]
)

EVALS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("epoch", pa.float64()),
        ("flops", pa.float64()),
        ("val_loss", pa.float64()),
        ("val_loss_se", pa.float64()),
        ("mc_acc", pa.float64()),
        ("mc_margin", pa.float64()),
        ("mc_n", pa.int64()),
        # "branch" (a cooled-down fork), "final" (the run's last step) or "mid-run"; docs/design.md
        ("kind", pa.string()),
        ("fork_step", pa.int64()),  # branch rows: the main-run step the branch forked from
        ("run_flops", pa.float64()),  # FLOPs the run has spent so far, branches included
    ]
)

RUNS_DIR = "runs"  # <home>/<study>/runs/<run_id>/
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.parquet"
EVALS_FILE = "evals.parquet"
RESULT_FILE = "result.json"
PLAN_FILE = "plan.json"  # {"spec_hashes": [...]}: the study specs that planned the run
FAILURE_FILE = "failure.json"  # {"status": "failed", "failure_reason": ...}: worker died for good
WORKER_FILE = "worker.json"  # pid and host of the process training the run, for `flows status`
CKPT_DIR = "ckpt"  # the latest checkpoint (training_core.checkpoint)
TORCHRUN_LOG = "torchrun.log"  # stdout+stderr of all ranks of a multi-process run
LAUNCH_CONFIG_FILE = "run_config.json"  # the config handed to `training_core.launch`


class RunResult(BaseModel):
    """The final record of a run (``result.json``); see docs/design.md for the field list."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    status: Literal["completed", "failed"]
    failure_reason: str | None = None
    objective: str
    model_name: str
    n_params: int
    n_params_nonembed: int
    n_params_active: int
    flops_per_token: float
    unique_tokens: int
    epochs: float
    seed: int
    budget_id: str
    steps: int
    tokens_seen: int
    total_flops: float
    branch_flops: float = 0.0  # extra FLOPs spent in evaluation branches (not in total_flops)
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    final_mc_acc: float | None = None
    best_mc_acc: float | None = None
    wall_s: float
    tokens_per_s: float
    started_at: str
    finished_at: str
    code_version: str

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Write via ``write(tmp_path)`` then rename over ``path`` (atomic on one filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Rewrite ``path`` with exactly ``schema``'s columns (missing values become null)."""
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)
    _atomic_write_bytes(path, lambda tmp: pq.write_table(table, tmp))


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return pq.read_table(path).to_pylist()


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False)
    _atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_result(run_dir: Path, result: RunResult) -> None:
    write_json(run_dir / RESULT_FILE, result.model_dump(mode="json"))


def read_result(run_dir: Path) -> RunResult | None:
    path = run_dir / RESULT_FILE
    return RunResult.model_validate(read_json(path)) if path.exists() else None


def result_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's result.json as a dict, or None while it has none (never run, or interrupted)."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a reader racing the atomic replace; treat as not finished


def is_run_dir(path: Path) -> bool:
    """A run directory: one that holds its config or its result."""
    return path.is_dir() and ((path / CONFIG_FILE).exists() or (path / RESULT_FILE).exists())
