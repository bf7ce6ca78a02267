"""Resume after kill -9 on a real embedded Ray, single-process and under torchrun.

This module's Ray gives its workers the test hold plugin (tests/fault_plugin) and ``HOLD_ENV``
= 10: a run that starts fresh stops training right after its checkpoint of step 10 and waits
there, so the kill always lands mid-run (never after the run has finished, however loaded the
machine). The retry resumes from that checkpoint, and a resumed run never holds, so it trains to
the end.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from crossover_fault_plugin import HOLD_ENV, plugin_pythonpath
from flows_fixtures import embedded_ray, smoke_tasks

from flows.dispatch import run_grid
from flows.run_task import RunTask
from training_core.checkpoint import checkpoint_step

HOLD_AT = 10  # a multiple of checkpoint_every_steps below, before the first eval's checkpoint


@pytest.fixture(scope="module")
def held_ray() -> Iterator[None]:
    yield from embedded_ray(env={"PYTHONPATH": plugin_pythonpath(), HOLD_ENV: str(HOLD_AT)})


def test_kill_9_mid_run_resumes_from_checkpoint(
    held_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from analysis.store import ResultsStore

    task = _task(smoke_spec, smoke_budgets, tmp_path)
    thread, outcomes, first = _start_until_held(task)
    assert first["resume_from_step"] is None
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=600)

    assert [o.status for o in outcomes] == ["completed"]
    second = json.loads((task.run_dir / "worker.json").read_text())
    assert second["pid"] != first["pid"]
    assert second["resume_from_step"] == HOLD_AT  # Ray's retry resumed; it did not start over
    result = json.loads((task.run_dir / "result.json").read_text())
    steps = pq.read_table(task.run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, result["steps"] + 1))  # every step exactly once
    with ResultsStore(tmp_path / "results.duckdb") as store:
        store.ingest_runs_root(tmp_path)
        runs = store.query("SELECT run_id, status FROM runs")
    assert runs.to_dict("records") == [{"run_id": task.run_id, "status": "completed"}]


@pytest.mark.slow  # `make test-slow`: kept out of the default run for its time
def test_kill_9_of_a_multi_gpu_run_resumes_under_torchrun(
    held_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    """Ray declares 2 GPUs, so this run trains in 2 torchrun processes (gloo on the CPU). Killing
    the Ray worker takes its ranks along; Ray's retry resumes the run from its checkpoint."""
    task = _task(smoke_spec, smoke_budgets, tmp_path, gpus=2.0)
    thread, outcomes, first = _start_until_held(task)
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=600)

    assert [o.status for o in outcomes] == ["completed"]
    second = json.loads((task.run_dir / "worker.json").read_text())
    assert second["pid"] != first["pid"] and second["resume_from_step"] == HOLD_AT
    assert (task.run_dir / "torchrun.log").exists()  # it did train under torchrun
    result = json.loads((task.run_dir / "result.json").read_text())
    steps = pq.read_table(task.run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, result["steps"] + 1))  # every step once: no stale rank wrote


def _task(smoke_spec, smoke_budgets, runs_root: Path, gpus: float = 0.0) -> RunTask:
    """The smoke grid's first run as the preset has it (2 epochs of 21 or more steps, each
    evaluated at its end, after the hold at step 10), checkpointed every 5 steps."""
    tasks = smoke_tasks(smoke_spec, smoke_budgets, runs_root, checkpoint_every_steps=5)
    return replace(tasks[0], gpus=gpus)


def _start_until_held(task: RunTask, max_retries: int = 2) -> tuple[threading.Thread, list, dict]:
    """Run ``task`` through run_grid in a thread until it holds at its checkpoint of step
    ``HOLD_AT``; returns the thread, the list its outcomes land in, and the worker marker (pid of
    the training process)."""
    outcomes: list = []
    thread = threading.Thread(
        target=lambda: outcomes.extend(run_grid([task], max_retries=max_retries))
    )
    thread.start()
    marker = task.run_dir / "worker.json"
    deadline = time.monotonic() + 600
    while not (marker.exists() and (checkpoint_step(task.run_dir) or -1) >= HOLD_AT):
        assert time.monotonic() < deadline, "run never checkpointed"
        assert thread.is_alive(), f"run ended before it could be killed: {outcomes}"
        time.sleep(0.2)
    time.sleep(1.0)  # were the hold broken, the run would checkpoint step 15 meanwhile
    assert checkpoint_step(task.run_dir) == HOLD_AT  # it holds: nothing trains past the checkpoint
    return thread, outcomes, json.loads(marker.read_text())


def test_run_whose_worker_dies_past_its_retries_is_failed_with_a_reason(
    held_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from analysis.store import ResultsStore

    task = replace(_task(smoke_spec, smoke_budgets, tmp_path), spec_hash="s1")
    thread, outcomes, first = _start_until_held(task, max_retries=0)
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=600)

    (outcome,) = outcomes
    assert outcome.status == "failed" and "system failure after retries" in outcome.reason
    failure = json.loads((task.run_dir / "failure.json").read_text())
    assert failure == {"status": "failed", "failure_reason": outcome.reason}
    assert json.loads((task.run_dir / "plan.json").read_text()) == {"spec_hashes": ["s1"]}
    with ResultsStore(tmp_path / "results.duckdb") as store:
        store.ingest_runs_root(tmp_path)
        store.set_current_spec("s1")
        run = store.query("SELECT status, failure_reason FROM runs").iloc[0]
        n_points = store.query("SELECT count(*) AS n FROM eval_points")["n"][0]
    assert (run["status"], run["failure_reason"]) == ("failed", outcome.reason)
    assert n_points == 0  # its evaluations before the death are not analysed
