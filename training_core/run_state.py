"""The mutable state of one run inside ``train_run``: trainer scalars and the objects it built.

Kept apart from ``trainer.py`` so the loop reads top to bottom; nothing here computes anything.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from training_core.config import RunConfig
from training_core.data import TokenWindows, TrainSchedule
from training_core.data_parallel import Parallel
from training_core.evaluation import EvalData

STATE_KEYS = ("step", "samples", "flops", "branch_flops", "train_wall_s", "wall_s", "nonfinite")


@dataclass
class Progress:
    """Trainer scalars that go into the checkpoint's state.json (all JSON-able)."""

    step: int = 0  # optimizer steps done
    samples: int = 0
    flops: float = 0.0  # the main run's own training FLOPs
    branch_flops: float = 0.0  # FLOPs of the evaluation branches taken so far (extra compute)
    train_wall_s: float = 0.0  # time in training steps only (evals excluded)
    wall_s: float = 0.0  # all time (evals, checkpoints) up to the last checkpoint, all sessions
    nonfinite: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STATE_KEYS}


@dataclass
class Run:
    """Everything one run needs, built once by ``_setup``."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    model: torch.nn.Module
    objective: Any
    optimizer: torch.optim.AdamW
    train: TokenWindows
    sched: TrainSchedule
    eval_data: EvalData
    fpt: float  # training FLOPs per token
    started_at: str
    scheduler: LambdaLR | None = (
        None  # torch LambdaLR of the main schedule (schedule.main_scheduler)
    )
    par: Parallel = field(default_factory=Parallel)  # one process unless launched by torchrun
    progress: Progress = field(default_factory=Progress)
    last_ckpt_step: int = -1
    resumed_from: int | None = None  # the checkpoint's step when this session resumed one
    session_t0: float = field(default_factory=time.perf_counter)
    session_wall0: float = 0.0  # progress.wall_s when this session started

    def wall_s(self) -> float:
        return self.session_wall0 + time.perf_counter() - self.session_t0

    def autocast(self) -> contextlib.AbstractContextManager:
        on = self.device.type == "cuda" and self.cfg.precision == "bf16"
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on)
