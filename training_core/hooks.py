"""Hooks: code that watches a run from outside the training loop, never part of a study.

The trainer calls every active hook at two points: after each checkpoint is on disk
(``after_checkpoint``) and after each optimizer step of an evaluation branch
(``after_branch_step``). A hook subclasses ``TrainingHooks`` and overrides what it needs.

A hook becomes active in one of two ways:
- ``installed(hook)``: in this process, for the duration of a ``with`` block (a test, a notebook);
- an entry point in the group ``training_core.hooks`` naming a zero-argument factory, loaded once
  per process. This is how a test reaches a run in another process (a Ray worker, a torchrun
  rank): it puts a plugin distribution on that process's path. The kill tests' checkpoint hold
  is such a plugin (tests/fault_plugin). No production code names or reads a test setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "training_core.hooks"


class TrainingHooks:
    """No-op base: override the calls a hook needs. Runs on every rank of a sharded run."""

    def after_checkpoint(self, step: int, resumed: bool) -> None:
        """The checkpoint of ``step`` is on disk; ``resumed``: this session resumed a checkpoint."""

    def after_branch_step(self, fork_step: int, done: int, cooldown: int, resumed: bool) -> None:
        """``done`` of the ``cooldown`` steps of the branch forked at ``fork_step`` are taken."""


_installed: list[TrainingHooks] = []
_plugins: list[TrainingHooks] | None = None  # loaded from entry points on first use


@contextmanager
def installed(hook: TrainingHooks) -> Iterator[TrainingHooks]:
    """Make ``hook`` active in this process inside the block."""
    _installed.append(hook)
    try:
        yield hook
    finally:
        _installed.remove(hook)


def active() -> list[TrainingHooks]:
    """Hooks installed in this process, then those of ``training_core.hooks`` entry points."""
    global _plugins
    if _plugins is None:
        _plugins = [point.load()() for point in entry_points(group=ENTRY_POINT_GROUP)]
    return [*_installed, *_plugins]


def after_checkpoint(step: int, resumed: bool) -> None:
    for hook in active():
        hook.after_checkpoint(step, resumed)


def after_branch_step(fork_step: int, done: int, cooldown: int, resumed: bool) -> None:
    for hook in active():
        hook.after_branch_step(fork_step, done, cooldown, resumed)
