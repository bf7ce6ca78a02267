"""Dispatch on a real embedded Ray: skip, failure recording, placement groups, progress.
(Resume after kill -9: test_dispatch_kill.py, whose Ray holds runs at a checkpoint.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_fixtures import embedded_ray, smoke_tasks

from flows.dispatch import run_grid
from flows.grid_progress import GridProgress, format_progress
from flows.run_task import RunTask


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    yield from embedded_ray()


def test_runs_complete_failures_are_recorded_and_reruns_skip(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    good = smoke_tasks(smoke_spec, smoke_budgets, tmp_path)
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


def test_multi_gpu_run_gets_a_placement_group_released_after(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    from ray.util import placement_group_table

    (task,) = smoke_tasks(smoke_spec, smoke_budgets, tmp_path)[:1]
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


def test_a_dead_progress_board_never_fails_the_sweep(
    local_ray: None, smoke_spec, smoke_budgets, tmp_path: Path
) -> None:
    import ray

    tasks = smoke_tasks(smoke_spec, smoke_budgets, tmp_path)
    killed: list[str] = []

    def kill_board(progress: GridProgress) -> None:
        if not killed:  # the first progress call: the board exists, runs are in flight
            board = ray.get_actor(progress.board_name)
            ray.kill(board, no_restart=True)  # as final as kill -9 of its process
            killed.append(progress.board_name)

    outcomes = run_grid(tasks, on_progress=kill_board)
    assert killed and [o.status for o in outcomes] == ["completed", "completed"]
