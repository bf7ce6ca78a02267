"""A multi-GPU run inside its Ray task: torchrun on this node, ``gpus`` ranks of FSDP2 training.

Called by ``flows.dispatch`` in the Ray task that holds the run's placement group. The ranks run
``python -m training_core.launch`` (one trainer: ``train_run`` shards itself when it finds a
process group) and exit when this Ray worker dies (``TRAINING_CORE_WATCH_PID``), so Ray's retry
never races a stale rank. The subprocess's output goes to ``torchrun.log`` in the run directory.

When it ends without a result.json (a rank died before rank 0 could write one), the reason comes
from torch elastic's error file, as torchtitan does: ``training_core.launch`` runs under
``@record``, each rank's exception lands in its own error file, and torchrun copies the first
failing rank's to the ``TORCHELASTIC_ERROR_FILE`` given here. A rank killed by a signal writes
none: the reason is then the log's last lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.run_task import PROGRESS_EVERY_S, PROJECT_ROOT, worker_env
from formats.run_dir import LAUNCH_CONFIG_FILE, METRICS_FILE, RESULT_FILE, TORCHRUN_LOG


def torchrun_command(config_path: Path, run_dir: Path, nproc: int) -> list[str]:
    """The argv of a multi-process run: torchrun (``torch.distributed.run``, through this
    interpreter so the same environment trains) on one node, ``nproc`` ranks."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a rendezvous on a free local port: several runs may share a node
        "--nproc-per-node",
        str(nproc),
        "-m",
        "training_core.launch",
        "--config",
        str(config_path),
        "--run-dir",
        str(run_dir),
    ]


def train_torchrun(
    cfg: Any, run_dir: Path, nproc: int, threads: int, report: Callable[[dict], None]
) -> dict[str, Any]:
    """Run ``cfg`` under torchrun, reporting progress from its metrics file; returns the result
    (a failed one when the processes left none: the failing rank's error, else the log's tail)."""
    from training_core import run_io
    from training_core.launch import WATCH_PID_ENV
    from training_core.trainer import record_failure

    env = {**os.environ, **worker_env(), WATCH_PID_ENV: str(os.getpid())}
    env["OMP_NUM_THREADS"] = str(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not _completed(run_dir):  # a failed attempt's result must not pass for this one's
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="launch-") as tmp:
        config_path = Path(tmp) / LAUNCH_CONFIG_FILE
        config_path.write_text(cfg.model_dump_json())
        error_file = Path(tmp) / "error.json"  # torchrun's: the first failing rank's error
        env["TORCHELASTIC_ERROR_FILE"] = str(error_file)
        with open(run_dir / TORCHRUN_LOG, "ab") as log:
            proc = subprocess.Popen(
                torchrun_command(config_path, run_dir, nproc),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(PROJECT_ROOT),
            )
            try:
                while proc.poll() is None:
                    time.sleep(PROGRESS_EVERY_S)
                    _report_from_metrics(run_dir, cfg.run_id, report)
            finally:
                if proc.poll() is None:  # this task is being cancelled: take the ranks along
                    proc.kill()
                    proc.wait()
        error = read_error_file(error_file)
    _report_from_metrics(run_dir, cfg.run_id, report)  # the last step, however short the run
    result = run_io.read_result(run_dir)
    # No result, or rank 0 failed too with the error it saw second (another rank's crash breaks
    # its collectives): the root cause is torch elastic's first failure, else the log's tail.
    if result is None or (error is not None and not result.completed):
        reason = f"torchrun exited with status {proc.returncode}: {error or _log_tail(run_dir)}"
        result = record_failure(cfg, run_dir, reason)
    return result.model_dump(mode="json")


def _completed(run_dir: Path) -> bool:
    from training_core import run_io

    try:
        result = run_io.read_result(run_dir)
    except (OSError, ValueError):  # unreadable: not a completed run
        return False
    return result is not None and result.status == "completed"


def _report_from_metrics(run_dir: Path, run_id: str, report: Callable[[dict], None]) -> None:
    """Progress of a run in other processes: the last row rank 0 flushed to metrics.parquet."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(run_dir / METRICS_FILE).to_pylist()
    except (OSError, ValueError):
        return  # not written yet, or a reader racing the atomic replace
    if rows:
        keys = ("step", "epoch", "train_loss", "tokens_per_s")
        report({"run_id": run_id, **{k: rows[-1].get(k) for k in keys}})


def read_error_file(path: Path) -> str | None:
    """The exception message of torch elastic's error file (``@record``'s JSON:
    ``{"message": {"message": "ValueError: ...", "extraInfo": {...}}}``), or None without one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, dict):  # written by @record: the exception's "Type: text"
        message = message.get("message")
    text = str(message).strip() if message else ""
    return text or None


def _log_tail(run_dir: Path, max_lines: int = 20) -> str:
    """The last lines of the run's torchrun log (a rank killed by a signal leaves no error file)."""
    try:
        lines = (run_dir / TORCHRUN_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    kept = [line.rstrip() for line in lines if line.strip()]
    return "\n".join(kept[-max_lines:]) or "(empty log)"
