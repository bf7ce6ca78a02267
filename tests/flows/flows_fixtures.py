"""Helpers for the flows tests: free ports, an embedded Ray for one module, smoke-grid tasks,
servers started in their own process group."""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
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
        assert connect_ray(None, num_cpus=2, temp_dir=temp, num_gpus=2, env=env)  # retries
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


def start_logged(cmd: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session (so teardown can stop its whole process group by its
    PID with ``flows.server.stop_group``), its output to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(proc: subprocess.Popen, api: str, log: Path, timeout_s: float = 240) -> None:
    """Poll a Prefect server's ``/health`` until it answers (generous: a fresh PREFECT_HOME runs
    migrations, slowly on a loaded 2-core machine); fail with its log if it exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"no healthy server at {api}:\n{log.read_text()}"
        time.sleep(1)


def fill_disk(mount: Path, leave_bytes: int = 0) -> Path:
    """Fill ``mount`` with a ballast file until at most ``leave_bytes`` are free; returns it
    (unlink it to free the space again)."""
    ballast = mount / "ballast"
    chunk = b"\0" * 65536
    with open(ballast, "ab") as out:
        try:
            while (free := shutil.disk_usage(mount).free) > leave_bytes:
                out.write(chunk[: min(len(chunk), free - leave_bytes)])
                out.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    return ballast
