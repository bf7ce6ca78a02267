"""The checkpoint hold of the kill tests: when it lets a run go on (the hold itself is exercised
by the kill tests in test_distributed.py and tests/flows/test_dispatch_kill.py)."""

from __future__ import annotations

import pytest

from training_core.faults import HOLD_ENV, hold_if_asked


def test_no_hold_unless_asked_before_the_step_or_after_a_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(HOLD_ENV, raising=False)
    hold_if_asked(100, resumed=False)  # not set: returns
    monkeypatch.setenv(HOLD_ENV, "10")
    hold_if_asked(5, resumed=False)  # before the asked step: returns
    hold_if_asked(10, resumed=True)  # a resumed run never holds: returns


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOLD_ENV, "ten")
    with pytest.raises(ValueError, match=HOLD_ENV):
        hold_if_asked(10, resumed=False)
