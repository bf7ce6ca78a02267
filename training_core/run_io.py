"""Per-run files: metrics.parquet, evals.parquet (atomic rewrites) and result.json.

One writer per run directory; readers (analysis/) may read at any time and always see a complete
file because every write goes to a temp file that then replaces the old one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
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

METRICS_FILE, EVALS_FILE, RESULT_FILE, CONFIG_FILE = (
    "metrics.parquet",
    "evals.parquet",
    "result.json",
    "config.json",
)


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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def code_version() -> str:
    """The git commit of this checkout, or "unknown" outside a git tree (or before a commit)."""
    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None:
        return "unknown"
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
