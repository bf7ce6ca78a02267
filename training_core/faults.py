"""Fault injection for the kill tests; never set in a study.

``TRAINING_CORE_HOLD_AFTER_CHECKPOINT=N``: a run that started fresh stops training right after its
first checkpoint at a step >= N and waits there until something kills it. A "killed mid-run" test
then kills at a fixed point instead of racing the run's end on a loaded machine. A resumed run
never holds, so the retry after the kill trains to the end.
"""

from __future__ import annotations

import os
import time

HOLD_ENV = "TRAINING_CORE_HOLD_AFTER_CHECKPOINT"


def hold_if_asked(step: int, resumed: bool) -> None:
    """Called after every checkpoint (of ``step``); returns at once unless ``HOLD_ENV`` asks for
    a hold here, and then never returns."""
    value = os.environ.get(HOLD_ENV)
    if value is None or resumed:
        return
    if not value.isdigit():
        raise ValueError(f"{HOLD_ENV}: expected a step number, got {value!r}")
    if step < int(value):
        return
    print(f"{HOLD_ENV}: holding after the checkpoint of step {step}", flush=True)
    while True:
        time.sleep(1.0)
