"""One writer per study: an OS file lock in the study folder, held by whatever writes the study.

Both entry points take it: `flows run` (flows.cli, before Prefect and Ray start, so a second sweep
says so at once) and the flow functions themselves (flows.flows), so a flow run started from a
deployment by a Prefect worker, which never goes through the CLI, is excluded the same way.

The lock is an OS lock (``flock`` through filelock): the kernel releases it when its holder dies,
even by kill -9, so there is never a stale lock to clean up. Within one process it is reentrant:
the CLI holds it around the flow it calls, and the `study` flow around its subflows; one process
is one writer. Another process (a second `flows run`, a worker's flow run) waits or is refused.

A writer that runs out of disk says so in one line naming the path and the free space there
(``disk_full_line``); what it had written stays readable and a rerun resumes.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NO_SPACE = "No space left on device"  # strerror(ENOSPC); DuckDB and safetensors say it too
WRITER_LOCK = ".writer.lock"  # in the study folder
REPORT_WAIT_S = 120.0  # a report waits this long for a sweep holding the study, by default

_GUARD = threading.Lock()
_HELD: dict[str, tuple[int, int]] = {}  # lock path -> (pid, depth) of the locks this process holds


class StudyBusy(RuntimeError):
    """Another process holds the study's writer lock."""


def writer_timeout(wait: bool, report: bool = False) -> float:
    """How long to wait for the lock: as long as it takes when asked to wait; a report waits a
    while for a running sweep's ingest; a sweep is refused at once."""
    return -1.0 if wait else (REPORT_WAIT_S if report else 0.0)


@contextmanager
def study_writer(lock_path: Path, timeout_s: float) -> Iterator[None]:
    """Hold the study's writer lock, waiting up to ``timeout_s`` for it (< 0: as long as it
    takes); raises ``StudyBusy`` (one line naming the lock) when another process keeps it."""
    key = str(Path(lock_path).absolute())
    with _GUARD:
        pid, depth = _HELD.get(key, (0, 0))
        if pid == os.getpid():  # a pid of our parent means a forked child: it holds nothing
            _HELD[key] = (pid, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            _release(key)
        return
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(key, is_singleton=False)
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        waited = f" after {timeout_s:.0f} s" if timeout_s > 0 else ""
        raise StudyBusy(
            f"another process is writing this study{waited} (lock {lock_path}); rerun with "
            "--wait (a flow run: wait=True) to wait for it"
        ) from None
    with _GUARD:
        _HELD[key] = (os.getpid(), 1)
    try:
        yield
    finally:
        _release(key)
        lock.release()


def _release(key: str) -> None:
    with _GUARD:
        pid, depth = _HELD[key]
        if depth > 1:
            _HELD[key] = (pid, depth - 1)
        else:
            del _HELD[key]


def disk_full_line(path: Path) -> str:
    """One line for a full disk: the path and the free space left on its device."""
    probe = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    return (
        f"no space left on the device of {path} ({free / 2**20:.1f} MiB free); free some space "
        "and rerun the same command: finished runs are skipped, interrupted ones resume"
    )
