"""`flows server`: a real Prefect server whose UI talks to the port it was given, stopped with its
parent (the whole process group of `prefect server start`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows.server import api_url, port_in_use, server_env

STARTUP_TIMEOUT_S = 180.0  # a fresh PREFECT_HOME runs migrations; generous on a loaded 2-core box
STOP_TIMEOUT_S = 90.0


def _group_members(pgid: int) -> list[int]:
    """Live processes of a process group, from /proc (field 5 of /proc/<pid>/stat is the pgrp)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _wait_healthy(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "flows server exited during start-up"
        try:
            if _get(f"http://127.0.0.1:{port}/api/health") == b"true":
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1.0)
    pytest.fail(f"no healthy Prefect server on port {port} within {STARTUP_TIMEOUT_S} s")


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _not_zombie(p)]
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # `make test-slow`: kept out of the default run for its time
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for process groups")
def test_server_ui_talks_to_its_port_and_stops_with_its_parent(
    cli_env: dict, free_port: int
) -> None:
    env = dict(cli_env, PREFECT_API_URL="http://127.0.0.1:4200/api")  # a stale export must not win
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "server", "--port", str(free_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    group: list[int] = []
    try:
        _wait_healthy(proc, free_port)
        settings = json.loads(_get(f"http://127.0.0.1:{free_port}/ui-settings"))
        assert settings["api_url"] == f"http://127.0.0.1:{free_port}/api"
        (child,) = _children(proc.pid)
        group = _group_members(child)
        assert child in group and proc.pid not in group  # the child leads its own group
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
        assert proc.returncode == 128 + signal.SIGTERM, out
        assert f"PREFECT_API_URL=http://127.0.0.1:{free_port}/api" in out
        assert _wait_gone(group, STOP_TIMEOUT_S) == []
        assert not port_in_use("127.0.0.1", free_port)
    finally:
        for pid in [proc.pid, *group]:  # teardown by PID, whatever happened above
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)


def test_server_env_points_every_setting_at_the_port() -> None:
    env = server_env("0.0.0.0", 4310, base={"PREFECT_API_URL": "http://127.0.0.1:4200/api"})
    assert env["PREFECT_UI_API_URL"] == env["PREFECT_API_URL"] == "http://127.0.0.1:4310/api"
    assert env["PREFECT_SERVER_API_PORT"] == "4310" and env["PREFECT_SERVER_API_HOST"] == "0.0.0.0"
    assert api_url("::1", 4310) == "http://[::1]:4310/api"


def test_busy_port_refused_before_start(cli_env: dict) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        proc = subprocess.run(
            [sys.executable, "-m", "flows.cli", "server", "--port", str(port)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr
