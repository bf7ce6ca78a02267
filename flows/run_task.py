"""What a run to dispatch is, and what became of it: plain records with no Ray and no Prefect.

``flows.grid`` plans ``RunTask``s, ``flows.dispatch`` runs them on Ray and ``flows.torchrun``
starts a multi-GPU run's ranks; all three import this module and none of them imports another
for these names, so planning a grid (``flows run --dry-run``) never imports Ray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.settings import OFFLINE_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROGRESS_EVERY_S = 1.0  # a worker reports progress at most this often


@dataclass(frozen=True)
class RunTask:
    """One run to dispatch: its resolved config (JSON), where it writes, and what it needs."""

    run_id: str
    label: str  # human-readable: "dlm/tiny/25K/ep12/s0"
    config_json: str
    run_dir: Path
    cpus: float = 1.0
    gpus: float = 0.0
    spec_hash: str | None = None  # the study spec that planned it (recorded in plan.json)


@dataclass
class RunOutcome:
    run_id: str
    label: str
    status: Literal["completed", "failed", "skipped"]
    reason: str | None = None
    tokens_seen: int = 0
    wall_s: float = 0.0


def worker_env() -> dict[str, str]:
    """Environment for Ray workers: offline/quiet, and the project importable without an install."""
    env = dict(OFFLINE_ENV)
    paths = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
