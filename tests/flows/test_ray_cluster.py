"""`flows run sweep --ray-address` against a real `ray start --head` on 127.0.0.1.

The head is started in the foreground (``--block``) in its own session so teardown stops exactly
what this test started: its process group by PID, then any straggler whose command line names
this test's unique Ray temp dir. `ray stop` is not used: it stops every Ray on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml
from flows_fixtures import free_ports

from flows.server import stop_group
from flows.spec import PRESETS_DIR

RAY_BIN = Path(sys.executable).parent / "ray"


def _pids_naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def ray_head(short_tmp: Path, cli_env: dict) -> Iterator[tuple[str, Path]]:
    # Ray's fixed defaults (client server 10001, dashboard agent 52365) could be taken by another
    # Ray on the machine: every port this head listens on is chosen here at run time.
    gcs, client, agent = free_ports(3)
    cmd = [
        str(RAY_BIN), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--num-cpus", "1", "--num-gpus", "0",
        "--include-dashboard", "false", "--disable-usage-stats",
        "--temp-dir", str(short_tmp),
    ]  # fmt: skip
    log = open(short_tmp.parent / f"{short_tmp.name}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env=cli_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_port(gcs, timeout=120)
        yield f"127.0.0.1:{gcs}", short_tmp
    finally:
        stop_group(proc, grace_s=5)
        for pid in _pids_naming(str(short_tmp)):  # raylet children outside the group, if any
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.mark.slow  # `make test-slow`: kept out of the default run for its time
def test_sweep_on_an_existing_ray_cluster(
    ray_head: tuple[str, Path], home_with_budgets: Path, cli_env: dict
) -> None:
    address, ray_temp = ray_head
    home = home_with_budgets
    # The smoke study with one objective: 2 runs on the smoke budgets already built in ``home``
    # (the cluster path is the same for any number of runs; the head runs them one at a time).
    spec = yaml.safe_load((PRESETS_DIR / "smoke.yaml").read_text())
    study = home / "study.yaml"
    study.write_text(yaml.safe_dump({**spec, "objectives": ["ar"]}))
    cmd = [sys.executable, "-m", "flows.cli", "run", "sweep", "--config", str(study)]
    proc = subprocess.run(
        [*cmd, "--home", str(home), "--ray-address", address],
        env=cli_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 trained, 0 already done, 0 failed" in proc.stdout
    # The runs executed on that cluster: its session logs hold the training workers' logs.
    worker_logs = list(ray_temp.glob("session_*/logs/worker-*.out"))
    assert worker_logs, "no worker ran on the external cluster"
    with duckdb.connect(str(home / "smoke" / "results.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone() == (
            2,
        )
