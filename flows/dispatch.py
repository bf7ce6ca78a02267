"""Run a grid of training runs as Ray tasks, on an embedded local Ray or an existing cluster.

Retries live in ONE layer, Ray's: a task whose worker process dies (kill -9, OOM killer, a lost
node) is resubmitted up to ``max_retries`` times, and because ``train_run`` resumes from the
checkpoint in the same run directory the retry continues where the dead worker stopped.
Application errors (an exception in training, a non-finite loss) are never retried: rerunning the
same config on the same data fails the same way and burns GPU hours, so the run is recorded as
failed with its reason and the grid goes on. Prefect sits above this and does not retry training
either (a Prefect retry would resubmit the whole grid, a second layer fighting the first).

A run asking for more than one GPU trains with FSDP2 in ``gpus`` processes: its Ray task (holding
the run's placement group) starts ``torchrun --standalone --nproc-per-node <gpus> -m
training_core.launch`` on that node and waits for it. The retry layer stays Ray's: the ranks exit
when the Ray worker dies (``training_core.launch`` watches it), so Ray's resubmission resumes from
the checkpoint with no stale rank still writing. A torchrun that exits without a result.json (a
rank killed or crashed before rank 0 could record it) is recorded as failed with the tail of its
log (``flows/torchrun.py``); a later sweep retries it from its checkpoint.

No Prefect code runs on Ray workers: the Prefect tasks stay on the driver and call this module, so
workers never start their own temporary Prefect server.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.grid_progress import (  # noqa: F401  (re-exported for callers)
    GridProgress,
    ProgressCallback,
    TerminalProgress,
    format_progress,
)
from flows.ray_connect import LOOPBACK, connect_ray  # noqa: F401  (re-exported for callers)
from flows.run_task import PROGRESS_EVERY_S, RunOutcome, RunTask
from formats.run_dir import FAILURE_FILE, PLAN_FILE, WORKER_FILE, write_json
from formats.run_dir import result_status as read_status
from pipeline.settings import OFFLINE_ENV


def record_plan(task: RunTask) -> None:
    """Add the task's spec hash to its run dir's plan.json (a run can be planned by several
    versions of a spec when its config did not change)."""
    if task.spec_hash is None:
        return
    path = task.run_dir / PLAN_FILE
    try:
        hashes = list(json.loads(path.read_text()).get("spec_hashes", []))
    except (OSError, ValueError, AttributeError):
        hashes = []
    if task.spec_hash not in hashes:
        task.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, {"spec_hashes": [*hashes, task.spec_hash]})


def record_failure(task: RunTask, reason: str) -> None:
    """A run that never reached a terminal state by itself (its worker died more often than the
    retries allow): failure.json, so ingest and `flows status` show it failed, with the reason.
    A later sweep retries it (it has no completed result.json) and removes the file."""
    if read_status(task.run_dir) is None:
        write_json(task.run_dir / FAILURE_FILE, {"status": "failed", "failure_reason": reason})


def is_completed(run_dir: Path) -> bool:
    status = read_status(run_dir)
    return bool(status and status.get("status") == "completed")


def run_grid(
    tasks: Sequence[RunTask],
    *,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    max_retries: int = 2,
    on_progress: ProgressCallback | None = None,
    poll_s: float = 0.5,
) -> list[RunOutcome]:
    """Run every task not already completed; returns one outcome per task, in input order."""
    import ray

    progress = GridProgress(total=len(tasks), labels={t.run_id: t.label for t in tasks})
    outcomes: dict[str, RunOutcome] = {}
    todo = []
    for task in tasks:
        record_plan(task)
        if is_completed(task.run_dir):
            outcomes[task.run_id] = RunOutcome(task.run_id, task.label, "skipped")
            progress.skipped += 1
        else:
            todo.append(task)
    if not todo:
        _emit(on_progress, progress)
        return [outcomes[t.run_id] for t in tasks]

    # A temp dir of our own for an embedded Ray, removed afterwards (sessions write logs there).
    temp = None if ray_address or ray.is_initialized() else Path(tempfile.mkdtemp(prefix="ray-"))
    started_ray = connect_ray(ray_address, num_cpus, temp)
    try:
        progress.board_name = f"progress-board-{uuid.uuid4().hex[:12]}"
        board = _remotes()[1].options(num_cpus=0, name=progress.board_name).remote()
        pending = {}
        for task in todo:
            (task.run_dir / FAILURE_FILE).unlink(missing_ok=True)
            ref, group = _submit(task, board, max_retries)
            pending[ref] = (task, group)
        _wait_for_all(pending, board, outcomes, progress, on_progress, poll_s)
        ray.kill(board)
    finally:
        if started_ray:
            ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return [outcomes[t.run_id] for t in tasks]


def _wait_for_all(
    pending: dict[Any, tuple[RunTask, Any]],
    board: Any,
    outcomes: dict[str, RunOutcome],
    progress: GridProgress,
    on_progress: ProgressCallback | None,
    poll_s: float,
) -> None:
    """Collect every submitted run into ``outcomes`` as it finishes (releasing its placement
    group at once), reporting progress every ``poll_s`` seconds."""
    import ray
    from ray.util.placement_group import remove_placement_group

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
        for ref in ready:
            task, group = pending.pop(ref)
            outcome = _collect(ref, task)
            if group is not None:  # give the run's GPUs back to the cluster now
                remove_placement_group(group)
            outcomes[task.run_id] = outcome
            progress.done += outcome.status == "completed"
            progress.failed += outcome.status == "failed"
        snapshot = _board_snapshot(board)
        progress.running = {k: v for k, v in snapshot.items() if k not in outcomes}
        _emit(on_progress, progress)


def _board_snapshot(board: Any) -> dict[str, dict[str, Any]]:
    """The board's latest progress, or nothing: the display is best-effort and never fails a
    sweep (a dead board is restarted by Ray, empty; workers' reports to it are fire-and-forget)."""
    import ray

    try:
        return ray.get(board.snapshot.remote(), timeout=30)
    except (ray.exceptions.RayError, TimeoutError):
        return {}


def _emit(callback: ProgressCallback | None, progress: GridProgress) -> None:
    if callback is not None:
        callback(progress)


def _submit(task: RunTask, board: Any, max_retries: int) -> tuple[Any, Any]:
    """Submit one run; a multi-GPU run gets a placement group so its GPUs land on one node.
    Returns (object ref, placement group or None)."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    options: dict[str, Any] = {
        "num_cpus": task.cpus,
        "num_gpus": task.gpus,
        "max_retries": max_retries,
        "retry_exceptions": False,  # application errors are final: see the module docstring
        "name": f"train:{task.label}",
    }
    group = None
    if task.gpus > 1:
        group = placement_group([{"CPU": task.cpus, "GPU": task.gpus}], strategy="STRICT_PACK")
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=group, placement_group_capture_child_tasks=True
        )
    threads = max(1, int(task.cpus))
    nproc = int(task.gpus) if task.gpus > 1 else 1
    ref = (
        _remotes()[0]
        .options(**options)
        .remote(task.config_json, str(task.run_dir), board, threads, nproc)
    )
    return ref, group


def _collect(ref: Any, task: RunTask) -> RunOutcome:
    """Turn a finished Ray ref into an outcome; errors become a failed outcome, never a raise."""
    import ray

    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        # train_run wrote result.json (failed, with the error text) before re-raising.
        status = read_status(task.run_dir) or {}
        reason = status.get("failure_reason") or _last_line(str(err))
        return RunOutcome(task.run_id, task.label, "failed", reason)
    except ray.exceptions.RayError as err:
        # The worker died more often than max_retries allows (or the node is gone).
        reason = f"system failure after retries: {type(err).__name__}: {_last_line(str(err))}"
        record_failure(task, reason)
        return RunOutcome(task.run_id, task.label, "failed", reason)
    status = result.get("status")
    return RunOutcome(
        task.run_id,
        task.label,
        "completed" if status == "completed" else "failed",
        result.get("failure_reason"),
        int(result.get("tokens_seen") or 0),
        float(result.get("wall_s") or 0.0),
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _train_in_worker(
    config_json: str, run_dir: str, board: Any, threads: int, nproc: int = 1
) -> dict[str, Any]:
    """Body of the Ray task: train (or resume, or skip) one run; reports progress to the board.
    ``nproc`` > 1: in that many torchrun processes (FSDP2), one per GPU."""
    import socket

    import torch

    from training_core import RunConfig, train_run
    from training_core.checkpoint import checkpoint_step

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if not torch.cuda.is_available():
        torch.set_num_threads(threads)
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    marker = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.time(),
        "resume_from_step": checkpoint_step(path),  # None: a fresh start
    }
    (path / WORKER_FILE).write_text(json.dumps(marker))
    cfg = RunConfig.model_validate_json(config_json)
    last_sent = 0.0

    def report(info: dict[str, Any]) -> None:
        nonlocal last_sent
        now = time.monotonic()
        # One actor call per second at most: progress must not cost training throughput.
        if now - last_sent >= PROGRESS_EVERY_S or info.get("step") == info.get("total_steps"):
            board.report.remote(cfg.run_id, dict(info))
            last_sent = now

    board.report.remote(cfg.run_id, {"step": 0, "tokens_per_s": 0.0, "pid": os.getpid()})
    if nproc > 1:
        from flows.torchrun import train_torchrun

        return train_torchrun(cfg, path, nproc, threads, report)
    result = train_run(cfg, path, on_progress=report)
    return result.model_dump(mode="json")


@functools.cache
def _remotes() -> tuple[Any, Any]:
    """The Ray task and the progress actor, made on first use: importing this module (for its
    records or its progress line) never imports Ray."""
    import ray

    @ray.remote(max_restarts=-1)
    class ProgressBoard:
        """Latest progress per run; workers push, the driver polls (one small actor, no CPU)."""

        def __init__(self) -> None:
            self.latest: dict[str, dict[str, Any]] = {}

        def report(self, run_id: str, info: dict[str, Any]) -> None:
            self.latest[run_id] = info

        def snapshot(self) -> dict[str, dict[str, Any]]:
            return dict(self.latest)

    return ray.remote(_train_in_worker), ProgressBoard
