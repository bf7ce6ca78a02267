"""A real `flows run sweep` (temporary Prefect server + embedded Ray): every process it starts
listens on loopback only, and a kill -9 of the driver takes all of them down and frees the lock.

Its runs hold after their first checkpoint (``HOLD_ENV``), so the sockets are read while training
is in flight and the kill lands mid-run however loaded the machine.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crossover_fault_plugin import HOLD_ENV, plugin_env
from filelock import FileLock

from flows.watchdog import alive, descendants

WAIT_S = 600.0  # generous: a loaded 2-core machine starts Prefect and Ray in tens of seconds


def _proc_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp{,6} addresses: host-order 32-bit words in hex."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_sockets(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state held by one of ``pids``."""
    listening: dict[str, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                addr, port = fields[1].split(":")
                listening[fields[9]] = (str(_proc_address(addr)), int(port, 16))
    found = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # gone meanwhile
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            if link.startswith("socket:[") and inode in listening:
                found.append((pid, *listening[inode]))
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _wait_for(condition, what: str, proc: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            raise AssertionError(f"sweep exited ({code}) before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {WAIT_S:.0f} s:\n{log.read_text()}")
        time.sleep(1.0)


@pytest.mark.slow  # `make test-slow`: kept out of the default run for its time
def test_sweep_listens_on_loopback_only_and_its_children_die_with_it(
    home_with_budgets: Path, cli_env: dict
) -> None:
    home = home_with_budgets
    log = home / "sweep.log"
    env = plugin_env(cli_env, {HOLD_ENV: "1"})
    args = ["run", "sweep", "--preset", "smoke", "--home", str(home), "--num-cpus", "2"]
    with log.open("w") as out:
        sweep = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], env=env, stdout=out, stderr=out
        )
    runs = home / "smoke" / "runs"
    try:
        _wait_for(
            lambda: any((d / "ckpt").exists() for d in runs.glob("*")) if runs.exists() else False,
            "run holding at its checkpoint",
            sweep,
            log,
        )
        children = descendants(sweep.pid)
        sockets = listening_sockets({pid for pid, _ in children} | {sweep.pid})
        assert len(sockets) >= 3, sockets  # GCS, raylet, workers, Prefect: all listen somewhere
        exposed = [s for s in sockets if not _is_loopback(s[1])]
        assert exposed == [], f"listening beyond loopback (pid, address, port): {exposed}"

        os.kill(sweep.pid, signal.SIGKILL)
        sweep.wait(timeout=60)
        _wait_for(lambda: not alive(children), "reaped children", None, log)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait(timeout=60)
    lock = FileLock(str(home / "smoke" / ".writer.lock"), is_singleton=False)
    lock.acquire(timeout=0)  # no stale lock: a rerun can start at once
    lock.release()
