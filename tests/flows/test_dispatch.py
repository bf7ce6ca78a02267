"""Dispatch on a real embedded Ray: skip, failure recording, and resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray

from flows.dispatch import GridProgress, RunTask, connect_ray, format_progress, run_grid
from flows.grid import expand_grid


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One embedded Ray for the module (start-up costs seconds); shut down at the end. It
    declares 2 GPUs (Ray only counts them) so the multi-GPU placement-group path is exercised."""
    import shutil
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    assert connect_ray(None, num_cpus=2, temp_dir=temp, num_gpus=2)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def _tasks(smoke_spec, smoke_budgets, runs_root: Path, **update) -> list[RunTask]:
    _, manifests = smoke_budgets
    runs = expand_grid(smoke_spec, manifests)[:2]
    tasks = []
    for run in runs:
        cfg = run.config.model_copy(update=update) if update else run.config
        tasks.append(
            RunTask(cfg.run_id, run.label, cfg.model_dump_json(), runs_root / cfg.run_id, 1.0, 0.0)
        )
    return tasks


def test_runs_complete_failures_are_recorded_and_reruns_skip(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    good = _tasks(smoke_spec, smoke_budgets, tmp_path)
    cfg = json.loads(good[0].config_json)
    cfg["data"]["train_files"] = [str(tmp_path / "missing.ds")]
    bad_id = "bad0000000000000"
    bad = RunTask(bad_id, "ar/broken", json.dumps(cfg), tmp_path / bad_id, 1.0, 0.0)
    seen: list[GridProgress] = []

    outcomes = run_grid([*good, bad], on_progress=seen.append)

    assert [o.status for o in outcomes] == ["completed", "completed", "failed"]
    assert "missing.ds" in outcomes[2].reason
    # The failure is on disk too, with its error text, for the analysis store.
    result = json.loads((tmp_path / bad_id / "result.json").read_text())
    assert result["status"] == "failed" and "missing.ds" in result["failure_reason"]
    assert outcomes[0].tokens_seen > 0
    final = seen[-1]
    assert (final.done, final.failed, final.skipped, final.total) == (2, 1, 0, 3)
    assert "2 done · 1 failed" in format_progress(final, 61)

    again = run_grid([*good, bad])
    # Finished runs are skipped; the failed one is tried again (and fails the same way).
    assert [o.status for o in again] == ["skipped", "skipped", "failed"]


def test_kill_9_mid_run_resumes_from_checkpoint(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from analysis.store import ResultsStore

    (task,) = _tasks(smoke_spec, smoke_budgets, tmp_path, epochs=40.0, checkpoint_every_steps=5)[:1]
    thread, outcomes, first = _start_until_checkpointed(task)
    assert first["resume_from_step"] is None
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=600)

    assert [o.status for o in outcomes] == ["completed"]
    second = json.loads((task.run_dir / "worker.json").read_text())
    assert second["pid"] != first["pid"]
    assert second["resume_from_step"] >= 10  # Ray's retry resumed; it did not start over
    result = json.loads((task.run_dir / "result.json").read_text())
    steps = pq.read_table(task.run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, result["steps"] + 1))  # every step exactly once
    with ResultsStore(tmp_path / "results.duckdb") as store:
        store.ingest_runs_root(tmp_path)
        runs = store.query("SELECT run_id, status FROM runs")
    assert runs.to_dict("records") == [{"run_id": task.run_id, "status": "completed"}]


def test_multi_gpu_run_gets_a_placement_group_released_after(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from ray.util import placement_group_table

    (task,) = _tasks(smoke_spec, smoke_budgets, tmp_path)[:1]
    two_gpu = RunTask(task.run_id, task.label, task.config_json, task.run_dir, 1.0, 2.0)
    before = set(placement_group_table())
    outcomes = run_grid([two_gpu])
    assert [o.status for o in outcomes] == ["completed"]
    groups = {k: v for k, v in placement_group_table().items() if k not in before}
    assert len(groups) == 1
    (group,) = groups.values()
    assert group["strategy"] == "STRICT_PACK"
    assert group["bundles"] == {0: {"CPU": 1.0, "GPU": 2.0}}
    assert group["state"] == "REMOVED"


def test_kill_9_of_a_multi_gpu_run_resumes_under_torchrun(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    """Ray declares 2 GPUs, so this run trains in 2 torchrun processes (gloo on the CPU). Killing
    the Ray worker takes its ranks along; Ray's retry resumes the run from its checkpoint."""
    (task,) = _tasks(smoke_spec, smoke_budgets, tmp_path, epochs=20.0, checkpoint_every_steps=5)[:1]
    task = RunTask(task.run_id, task.label, task.config_json, task.run_dir, 1.0, 2.0)
    thread, outcomes, first = _start_until_checkpointed(task)
    os.kill(first["pid"], signal.SIGKILL)
    thread.join(timeout=600)

    assert [o.status for o in outcomes] == ["completed"]
    second = json.loads((task.run_dir / "worker.json").read_text())
    assert second["pid"] != first["pid"] and second["resume_from_step"] >= 10
    assert (task.run_dir / "torchrun.log").exists()  # it did train under torchrun
    result = json.loads((task.run_dir / "result.json").read_text())
    steps = pq.read_table(task.run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, result["steps"] + 1))  # every step once: no stale rank wrote


def test_progress_line_names_running_runs_and_estimates_time_left() -> None:
    progress = GridProgress(total=4, done=1, skipped=1, labels={"a": "dlm/xs/25K/ep96/s0"})
    progress.running = {"a": {"step": 50, "total_steps": 100, "tokens_per_s": 12000.0}}
    # work = 3 runs (one skipped); done 1 + half of one = 1.5 / 3 -> half the work in 60 s
    assert progress.fraction_done == 0.5
    line = format_progress(progress, 60)
    assert "~1m00s left" in line and "now: dlm/xs/25K/ep96/s0 50%" in line
    assert "left" not in format_progress(GridProgress(total=2), 5)  # nothing done: no guess


def _start_until_checkpointed(task: RunTask) -> tuple[threading.Thread, list, dict]:
    """Run ``task`` through run_grid in a thread until it has checkpointed step 10; returns the
    thread, the list its outcomes land in, and the worker marker (pid of the training process)."""
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.extend(run_grid([task], max_retries=2)))
    thread.start()
    marker = task.run_dir / "worker.json"
    state = task.run_dir / "ckpt" / "state.json"
    deadline = time.monotonic() + 300
    while not (marker.exists() and state.exists() and json.loads(state.read_text())["step"] >= 10):
        assert time.monotonic() < deadline, "run never checkpointed"
        assert thread.is_alive(), f"run ended before it could be killed: {outcomes}"
        time.sleep(0.2)
    return thread, outcomes, json.loads(marker.read_text())
