"""Fault injection for the kill tests; never set in a study.

``TRAINING_CORE_HOLD_AFTER_CHECKPOINT=N``: a run that started fresh stops training right after its
first checkpoint at a step >= N and waits there until something kills it. A "killed mid-run" test
then kills at a fixed point instead of racing the run's end on a loaded machine. A resumed run
never holds, so the retry after the kill trains to the end.

``TRAINING_CORE_HOLD_IN_BRANCH=N``: the same inside an evaluation branch: a fresh run holds halfway
through the cooldown of its first branch forked at a step >= N (the main run's pre-branch
checkpoint is on disk, the branch's state only in memory), announcing it on stdout.
"""

from __future__ import annotations

import os
import time

HOLD_ENV = "TRAINING_CORE_HOLD_AFTER_CHECKPOINT"
HOLD_BRANCH_ENV = "TRAINING_CORE_HOLD_IN_BRANCH"


def hold_if_asked(step: int, resumed: bool) -> None:
    """Called after every checkpoint (of ``step``); returns at once unless ``HOLD_ENV`` asks for
    a hold here, and then never returns."""
    if _asked(HOLD_ENV, step, resumed):
        _hold(f"{HOLD_ENV}: holding after the checkpoint of step {step}")


def hold_in_branch_if_asked(fork_step: int, done: int, cooldown: int, resumed: bool) -> None:
    """Called after each of a branch's ``cooldown`` steps (``done`` so far) of the branch forked
    at ``fork_step``; holds at the middle one when ``HOLD_BRANCH_ENV`` asks for it."""
    if done == max(cooldown // 2, 1) and _asked(HOLD_BRANCH_ENV, fork_step, resumed):
        _hold(f"{HOLD_BRANCH_ENV}: holding in the branch at {fork_step}, step {done}/{cooldown}")


def _asked(name: str, step: int, resumed: bool) -> bool:
    value = os.environ.get(name)
    if value is None or resumed:
        return False
    if not value.isdigit():
        raise ValueError(f"{name}: expected a step number, got {value!r}")
    return step >= int(value)


def _hold(message: str) -> None:
    print(message, flush=True)
    while True:
        time.sleep(1.0)
