"""Training hooks: what the trainer calls, in-process and through the entry-point plugin that
the kill tests use in other processes (tests/fault_plugin). The hold itself is exercised by the
kill tests (test_branches, test_distributed, tests/flows/test_dispatch_kill, test_watchdog)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from crossover_fault_plugin import HOLD_ENV, PROJECT_ROOT, plugin_env, should_hold
from trainer_fixtures import tiny_config, tiny_data

from training_core import StopRun, train_run
from training_core.checkpoint import checkpoint_step
from training_core.hooks import TrainingHooks, installed

WSD = {"schedule": "wsd", "warmup": 2, "decay_frac": 0.2}
BRANCHED = {"every_epochs": 1.0, "branches": True, "cooldown_fraction": 0.2}


class Recorder(TrainingHooks):
    def __init__(self) -> None:
        self.checkpoints: list[tuple[int, bool]] = []
        self.branch_steps: list[tuple[int, int, int]] = []

    def after_checkpoint(self, step: int, resumed: bool) -> None:
        self.checkpoints.append((step, resumed))

    def after_branch_step(self, fork_step: int, done: int, cooldown: int, resumed: bool) -> None:
        self.branch_steps.append((fork_step, done, cooldown))


def test_an_installed_hook_sees_every_checkpoint_and_branch_step(tmp_path: Path) -> None:
    # 32 steps, an evaluation every 8: a pre-branch checkpoint at 8, 16, 24 and one at the end;
    # cooldowns of round(0.2 * fork) = 2, 3, 5 steps.
    cfg = tiny_config(tiny_data(tmp_path), kind="ar", epochs=4.0, optim=WSD, eval=BRANCHED)

    def stop_at_16(event: dict) -> None:
        if event["step"] == 16:
            raise StopRun("stop")

    with installed(Recorder()) as first:
        with pytest.raises(StopRun):
            train_run(cfg, tmp_path / "run", on_progress=stop_at_16)
    assert first.checkpoints == [(8, False), (16, False)]
    assert first.branch_steps == [(8, 1, 2), (8, 2, 2), (16, 1, 3), (16, 2, 3), (16, 3, 3)]
    assert checkpoint_step(tmp_path / "run") == 16

    with installed(Recorder()) as second:
        train_run(cfg, tmp_path / "run")
    assert second.checkpoints == [(24, True), (32, True)]  # the resumed session says so
    assert second.branch_steps == [(24, k, 5) for k in range(1, 6)]


def test_no_hook_is_called_once_uninstalled(tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data(tmp_path), kind="ar", epochs=1.0)
    with installed(Recorder()) as hook:
        pass
    train_run(cfg, tmp_path / "run")
    assert hook.checkpoints == [] and checkpoint_step(tmp_path / "run") == 8


def _python(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_plugin_reaches_another_process_only_through_its_path() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    active = "import json; from training_core import hooks; " + (
        "print(json.dumps([type(h).__name__ for h in hooks.active()]))"
    )
    assert json.loads(_python(active, plugin_env(env, {}))) == ["FaultHooks"]
    # Without the plugin's folder on the path, nothing registers a hook (importlib.metadata is
    # what hooks.active() reads; asked directly, the child need not import torch).
    group = "import importlib.metadata as m; " + (
        "print(len(m.entry_points(group='training_core.hooks')))"
    )
    assert _python(group, {**env, "PYTHONPATH": str(PROJECT_ROOT)}).strip() == "0"
    assert _python(group, plugin_env(env, {})).strip() == "1"


def test_the_hold_asks_only_fresh_runs_at_or_past_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOLD_ENV, raising=False)
    assert should_hold(HOLD_ENV, 100, resumed=False) is False  # not asked
    monkeypatch.setenv(HOLD_ENV, "10")
    assert should_hold(HOLD_ENV, 5, resumed=False) is False  # before the asked step
    assert should_hold(HOLD_ENV, 10, resumed=False) is True
    assert should_hold(HOLD_ENV, 15, resumed=False) is True
    assert should_hold(HOLD_ENV, 10, resumed=True) is False  # a resumed run never holds


def test_a_bad_hold_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOLD_ENV, "ten")
    with pytest.raises(ValueError, match=HOLD_ENV):
        should_hold(HOLD_ENV, 10, resumed=False)
