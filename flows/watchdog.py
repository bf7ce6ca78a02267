"""The driver's children die with it: a small watchdog process that outlives a kill -9.

A sweep's driver starts a temporary Prefect server (uvicorn) and an embedded Ray (GCS, raylet,
agents, workers). A driver killed with SIGKILL cannot stop them, and they are not in a process
group we could signal as one: moving the driver into a group of its own would take it out of
the terminal's foreground group and Ctrl-C would no longer reach it. So the driver starts this
watchdog (``start_watchdog``), which

- snapshots the driver's descendants (pid + start time, so a reused pid is never signalled)
  every ``POLL_S`` seconds while the driver lives;
- notices the driver's end as end-of-file on a pipe only the driver holds (the kernel closes it
  whatever killed the driver; ``close_fds`` keeps it out of every child);
- then sends SIGTERM to every process of the last snapshot still alive, SIGKILL after
  ``GRACE_S``. After a clean exit the driver has stopped them all already: nothing is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

POLL_S = 1.0
GRACE_S = 5.0

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) from /proc, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> set[Proc]:
    """Every live descendant of ``root`` (children, their children, ...) as (pid, start)."""
    children: dict[int, list[Proc]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: set[Proc] = set()
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            if proc not in found:
                found.add(proc)
                todo.append(proc[0])
    return found


def alive(procs: set[Proc]) -> set[Proc]:
    return {p for p in procs if (s := _stat(p[0])) is not None and s[1] == p[1]}


def reap(procs: set[Proc], grace_s: float = GRACE_S) -> None:
    """SIGTERM every process of ``procs`` still alive (same start time), SIGKILL after grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in alive(procs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while alive(procs) and time.monotonic() < deadline:
            time.sleep(0.2)


def watch(driver: int, pipe: IO[bytes], poll_s: float = POLL_S) -> None:
    """Snapshot ``driver``'s descendants until ``pipe`` ends (the driver is gone), then reap
    whatever of them still runs."""
    me = os.getpid()
    last: set[Proc] = set()
    reader = threading.Thread(target=pipe.read, daemon=True)
    reader.start()
    while reader.is_alive():
        now = {p for p in descendants(driver) if p[0] != me}
        last = alive(last) | now  # keep orphans already reparented away from the driver
        reader.join(poll_s)
    reap(last)


def start_watchdog() -> subprocess.Popen[bytes]:
    """Start the watchdog of this process; it ends shortly after this process does."""
    return subprocess.Popen(
        [sys.executable, "-m", "flows.watchdog", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the driver's group must not stop the watchdog
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.stdin.buffer)
