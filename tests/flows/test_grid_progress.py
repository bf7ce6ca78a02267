"""The sweep's status line: counts, the share of work done, and time left (no Ray needed)."""

from __future__ import annotations

import io

from flows.grid_progress import GridProgress, TerminalProgress, format_progress


def test_progress_line_names_running_runs_and_estimates_time_left() -> None:
    progress = GridProgress(total=4, done=1, skipped=1, labels={"a": "dlm/xs/25K/ep96/s0"})
    progress.running = {"a": {"step": 50, "total_steps": 100, "tokens_per_s": 12000.0}}
    # work = 3 runs (one skipped); done 1 + half of one = 1.5 / 3 -> half the work in 60 s
    assert progress.fraction_done == 0.5
    line = format_progress(progress, 60)
    assert "~1m00s left" in line and "now: dlm/xs/25K/ep96/s0 50%" in line
    assert "left" not in format_progress(GridProgress(total=2), 5)  # nothing done: no guess


def test_terminal_progress_rewrites_one_line_on_a_tty_and_prints_lines_elsewhere() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    shown = TerminalProgress(tty)
    shown(GridProgress(total=2, done=1))
    shown(GridProgress(total=2, done=2))
    shown.close()
    assert tty.getvalue().count("\r\033[K") == 2 and tty.getvalue().endswith("\n")
    assert "runs 2/2 · 2 done" in tty.getvalue()
    log = io.StringIO()
    lines = TerminalProgress(log, every_s=3600.0)
    lines(GridProgress(total=2, done=1))
    lines(GridProgress(total=2, done=2))  # within every_s of the first: not printed
    assert log.getvalue().count("\n") == 1 and "runs 1/2 · 1 done" in log.getvalue()
