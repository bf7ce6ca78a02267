"""One writer per study, also when the study is written by a flow run that never went through
`flows run` (a deployment run by a Prefect worker).

A worker runs a deployment by importing ``flows.flows`` and calling the same flow function these
tests call, so calling its body (``.fn``) in-process while another process holds the lock proves
what a worker's flow run does, without a server and a worker (tests/flows/test_deployments.py
runs that path once). The other writer is a real second process holding the real OS lock.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flows import flows, writer
from flows.writer import StudyBusy, study_writer

_HOLD = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1], is_singleton=False)
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""
_TRY = """
import sys
from filelock import FileLock, Timeout
try:
    FileLock(sys.argv[1], is_singleton=False).acquire(timeout=0)
except Timeout:
    sys.exit(1)
"""


@contextmanager
def held_elsewhere(lock_path: Path) -> Iterator[subprocess.Popen]:
    """Another process holds ``lock_path`` until the block ends (or its stdin is closed)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=60)


def free_elsewhere(lock_path: Path) -> bool:
    """Whether another process could take the lock right now."""
    return subprocess.run([sys.executable, "-c", _TRY, str(lock_path)], timeout=60).returncode == 0


@pytest.mark.parametrize("flow_obj", [flows.sweep_flow, flows.study_flow, flows.report_flow])
def test_a_flow_run_is_refused_in_one_line_while_another_process_writes(
    flow_obj, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "REPORT_WAIT_S", 1.0)  # a report waits a while: not 2 min here
    lock = tmp_path / "smoke" / writer.WRITER_LOCK
    with held_elsewhere(lock), pytest.raises(StudyBusy) as busy:
        flow_obj.fn(preset="smoke", home=str(tmp_path))
    (line,) = str(busy.value).splitlines()
    assert "another process is writing this study" in line and str(lock) in line
    assert "wait=True" in line
    assert sorted(p.name for p in (tmp_path / "smoke").iterdir()) == [writer.WRITER_LOCK]


class _Reached(Exception):
    """Raised where the flow's first task would start: the flow got past the lock."""


def test_a_flow_run_holds_the_lock_while_it_writes_and_waits_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "smoke" / writer.WRITER_LOCK
    released = threading.Event()
    seen: list[tuple[bool, bool]] = []

    def first_task(*_args: object) -> None:
        # Stops the flow at its first task (the rest is the sweep every other test runs).
        seen.append((released.is_set(), free_elsewhere(lock)))
        raise _Reached

    monkeypatch.setattr(flows, "build_budgets_task", first_task)
    with pytest.raises(_Reached):  # nobody else writes: the flow takes the lock and holds it
        flows.sweep_flow.fn(preset="smoke", home=str(tmp_path))
    assert seen == [(False, False)] and free_elsewhere(lock)  # held while writing, then let go

    errors: list[BaseException] = []

    def run() -> None:
        try:
            flows.sweep_flow.fn(preset="smoke", home=str(tmp_path), wait=True)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            errors.append(err)

    with held_elsewhere(lock) as holder:
        thread = threading.Thread(target=run)
        thread.start()
        released.set()  # from here on the other writer may finish at any moment
        holder.stdin.close()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert [type(e) for e in errors] == [_Reached]
    # It waited: it got the lock only after the other writer had let go, and then held it.
    assert seen[1] == (True, False)


def test_the_lock_is_reentrant_within_one_process_only(tmp_path: Path) -> None:
    lock = tmp_path / "study" / writer.WRITER_LOCK
    with study_writer(lock, 0.0):
        with study_writer(lock, 0.0):  # the CLI around its flow, `study` around its subflows
            assert not free_elsewhere(lock)
        assert not free_elsewhere(lock)  # the inner exit does not let go
    assert free_elsewhere(lock)
