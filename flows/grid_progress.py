"""What a sweep shows while it runs: counts, throughput and time left, as one status line.

``flows.dispatch`` fills a ``GridProgress`` from the runs' outcomes and the workers' latest
reports and hands it to a callback: ``TerminalProgress`` on stderr, or the Prefect flow log
(``flows.artifacts``). Nothing here touches Ray or Prefect.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GridProgress:
    """What the terminal shows: counts, and the latest throughput of each running run."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    running: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # run_id -> "dlm/xs/25K/ep96/s0"
    board_name: str = ""  # the Ray actor holding workers' progress (best-effort display)

    @property
    def fraction_done(self) -> float:
        """Share of this sweep's work done: finished runs plus the step share of running ones
        (skipped runs are no work). Evaluations are not weighed apart: an estimate."""
        work = self.total - self.skipped
        if work <= 0:
            return 1.0
        partial = sum(
            min(float(p.get("step") or 0) / float(p["total_steps"]), 1.0)
            for p in self.running.values()
            if p.get("total_steps")
        )
        return min((self.done + self.failed + partial) / work, 1.0)

    @property
    def tokens_per_s(self) -> float:
        return sum(float(p.get("tokens_per_s") or 0.0) for p in self.running.values())


ProgressCallback = Callable[[GridProgress], None]


def format_progress(progress: GridProgress, elapsed_s: float) -> str:
    """One status line: ``runs 3/12 · 2 done · 1 failed · 2 running · 5 skipped · 18.2k tok/s``."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    finished = progress.done + progress.failed + progress.skipped
    line = (
        f"runs {finished}/{progress.total} · {progress.done} done · {progress.failed} failed · "
        f"{len(progress.running)} running · {progress.skipped} skipped · "
        f"{progress.tokens_per_s / 1000:.1f}k tok/s · {minutes}m{seconds:02d}s"
    )
    frac = progress.fraction_done
    if 0.02 <= frac < 1.0:  # too early an estimate is noise
        left = int(elapsed_s * (1.0 - frac) / frac)
        line += f" · ~{left // 60}m{left % 60:02d}s left"
    now = [
        f"{progress.labels.get(run_id, run_id)} {100 * min(p['step'] / p['total_steps'], 1):.0f}%"
        for run_id, p in sorted(progress.running.items())
        if p.get("total_steps")
    ]
    return line + (" · now: " + ", ".join(now) if now else "")


class TerminalProgress:
    """Live progress on stderr: one rewritten line on a terminal, else a line every ``every_s``."""

    def __init__(self, stream: Any = None, every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.start = time.monotonic()
        self.last_line = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, progress: GridProgress) -> None:
        now = time.monotonic()
        line = format_progress(progress, now - self.start)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        elif now - self.last_line >= self.every_s:
            self.stream.write(line + "\n")
            self.last_line = now
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
