"""A multi-GPU run inside its Ray task: torchrun on this node, ``gpus`` ranks of FSDP2 training.

Called by ``flows.dispatch`` in the Ray task that holds the run's placement group. The ranks run
``python -m training_core.launch`` (one trainer: ``train_run`` shards itself when it finds a
process group) and exit when this Ray worker dies (``TRAINING_CORE_WATCH_PID``), so Ray's retry
never races a stale rank. The subprocess's output goes to ``torchrun.log`` in the run directory;
when it ends without a result.json the run is recorded as failed with the log's tail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.dispatch import PROGRESS_EVERY_S, PROJECT_ROOT, is_completed, worker_env
from formats.run_dir import LAUNCH_CONFIG_FILE, METRICS_FILE, RESULT_FILE, TORCHRUN_LOG

_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")
_LOG_PREFIX = re.compile(r"^[DIWEF]\d{4} ")  # torch's glog-style lines: W1124 06:15:58 ...


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
    (a failed one with the log's tail when the processes left none)."""
    from training_core import run_io
    from training_core.launch import WATCH_PID_ENV
    from training_core.trainer import record_failure

    env = {**os.environ, **worker_env(), WATCH_PID_ENV: str(os.getpid())}
    env["OMP_NUM_THREADS"] = str(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not is_completed(run_dir):  # a failed attempt's result must not pass for this one's
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="launch-") as tmp:
        config_path = Path(tmp) / LAUNCH_CONFIG_FILE
        config_path.write_text(cfg.model_dump_json())
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
    _report_from_metrics(run_dir, cfg.run_id, report)  # the last step, however short the run
    result = run_io.read_result(run_dir)
    if result is None:
        reason = f"torchrun exited with status {proc.returncode}: {_log_tail(run_dir)}"
        result = record_failure(cfg, run_dir, reason)
    return result.model_dump(mode="json")


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


def _log_tail(run_dir: Path, max_lines: int = 20) -> str:
    """What went wrong, from the run's torchrun log: the first exception a rank raised (the root
    cause; torchrun's own summary follows it), else the log's last lines."""
    try:
        lines = (run_dir / TORCHRUN_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for i, line in enumerate(lines):
        if _EXCEPTION.match(line) and "ChildFailedError" not in line:
            out = [line.strip()]
            for more in lines[i + 1 : i + 6]:  # multi-line messages (pydantic lists fields)
                if not more.strip() or _LOG_PREFIX.match(more) or more.startswith("Traceback"):
                    break
                out.append(more.strip())
            return "\n".join(out)
    kept = [line.rstrip() for line in lines if line.strip()]
    return "\n".join(kept[-max_lines:]) or "(empty log)"
