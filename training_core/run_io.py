"""The run's own stamps (time, code version); the per-run files live in ``formats.run_dir``."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from formats.run_dir import (  # noqa: F401  (the trainer's writers, re-exported)
    CONFIG_FILE,
    EVALS_FILE,
    EVALS_SCHEMA,
    METRICS_FILE,
    METRICS_SCHEMA,
    RESULT_FILE,
    RunResult,
    read_json,
    read_result,
    read_rows,
    write_json,
    write_result,
    write_rows,
)


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
