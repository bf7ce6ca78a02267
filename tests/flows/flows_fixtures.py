"""Helpers for the flows tests: free ports, an embedded Ray for one module, smoke-grid tasks."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import ray

from flows.dispatch import connect_ray
from flows.grid import expand_grid
from flows.run_task import RunTask


def embedded_ray(env: Mapping[str, str] | None = None) -> Iterator[None]:
    """Body of a module-scoped fixture: one embedded Ray (start-up costs seconds), shut down at
    the end. It declares 2 GPUs (Ray only counts them) so the multi-GPU placement-group path is
    exercised; ``env`` goes to every worker."""
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        assert connect_ray(None, num_cpus=2, temp_dir=temp, num_gpus=2, env=env)
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def smoke_tasks(smoke_spec, smoke_budgets, runs_root: Path, **update) -> list[RunTask]:
    """The first two runs of the smoke grid as tasks under ``runs_root``; ``update`` changes
    their configs (a new config, so a new run id)."""
    _, manifests = smoke_budgets
    runs = expand_grid(smoke_spec, manifests)[:2]
    tasks = []
    for run in runs:
        cfg = run.config.model_copy(update=update) if update else run.config
        tasks.append(
            RunTask(cfg.run_id, run.label, cfg.model_dump_json(), runs_root / cfg.run_id, 1.0, 0.0)
        )
    return tasks


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free right now on 127.0.0.1 (chosen at run time, never
    hard-coded): all bound at once, so the kernel cannot hand out the same port twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
