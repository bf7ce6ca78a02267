"""The kill tests' hold, as a ``training_core.hooks`` plugin (entry point, this folder's dist-info).

A test puts this folder on a child process's ``PYTHONPATH`` (``plugin_env``) and asks for a hold
with one of these variables; the run then stops and waits until the test kills it:

``HOLD_ENV=N``: a run that started fresh holds right after its first checkpoint at a step >= N,
so a "killed mid-run" test kills at a fixed point instead of racing the run's end on a loaded
machine. A resumed run never holds, so the retry after the kill trains to the end.

``HOLD_BRANCH_ENV=N``: the same inside an evaluation branch: a fresh run holds halfway through
the cooldown of its first branch forked at a step >= N (the pre-branch checkpoint is on disk,
the branch's state only in memory), announcing it on stdout.

``RAISE_ON_RANK_ENV=R``: the process of rank R (torchrun's ``RANK``) raises after its first
checkpoint, so a test sees a rank other than 0 die with a message.

Only this test plugin reads the variables; the trainer just calls its hooks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from training_core.hooks import TrainingHooks

HOLD_ENV = "CROSSOVER_TEST_HOLD_AFTER_CHECKPOINT"
HOLD_BRANCH_ENV = "CROSSOVER_TEST_HOLD_IN_BRANCH"
RAISE_ON_RANK_ENV = "CROSSOVER_TEST_RAISE_ON_RANK"  # that rank raises after its first checkpoint
PLUGIN_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PLUGIN_DIR.parents[1]


def plugin_pythonpath(existing: str | None = None) -> str:
    """A PYTHONPATH with this plugin and the project first (default: after this process's)."""
    rest = os.environ.get("PYTHONPATH", "") if existing is None else existing
    paths = [str(PLUGIN_DIR), str(PROJECT_ROOT), *rest.split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(p for p in paths if p))


def plugin_env(env: dict[str, str], holds: dict[str, str]) -> dict[str, str]:
    """A child process's environment: ``env`` with the plugin on its PYTHONPATH, plus ``holds``
    (e.g. ``{HOLD_ENV: "10"}``)."""
    return {**env, "PYTHONPATH": plugin_pythonpath(env.get("PYTHONPATH", "")), **holds}


class FaultHooks(TrainingHooks):
    """Holds (or raises) where the environment asks (read at each call, so a test may set it)."""

    def after_checkpoint(self, step: int, resumed: bool) -> None:
        rank = os.environ.get(RAISE_ON_RANK_ENV)
        if rank is not None and os.environ.get("RANK", "0") == rank:
            raise RuntimeError(f"planted failure on rank {rank} after the checkpoint of {step}")
        if should_hold(HOLD_ENV, step, resumed):
            _hold(f"{HOLD_ENV}: holding after the checkpoint of step {step}")

    def after_branch_step(self, fork_step: int, done: int, cooldown: int, resumed: bool) -> None:
        if done == max(cooldown // 2, 1) and should_hold(HOLD_BRANCH_ENV, fork_step, resumed):
            where = f"the branch at {fork_step}, step {done}/{cooldown}"
            _hold(f"{HOLD_BRANCH_ENV}: holding in {where}")


def should_hold(name: str, step: int, resumed: bool) -> bool:
    """True when variable ``name`` asks for a hold at ``step`` of a run that did not resume."""
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
