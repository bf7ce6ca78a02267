"""Annealed evaluation branches: where to fork, how long to cool down, and a cheap in-memory fork.

At an evaluation point after ``fork_step`` steps of a WSD run (stable learning rate), the trainer
snapshots the model, optimizer and RNG here, trains ``cooldown_steps`` more steps on the
continuation of the same data stream (steps ``fork_step .. fork_step + cooldown_steps - 1`` of
the run's batch order and noise) with the learning rate decaying from the stable rate to the floor,
evaluates that finished model, and restores the snapshot so the main run goes on as if nothing had
happened. The branch is thus exactly a WSD run of ``fork_step + cooldown_steps`` steps whose decay
starts at the fork (Hu et al. 2024; Hägele et al. 2024).

Nothing here knows the objective, and nothing differs between ranks: a sharded run snapshots each
rank's own shards and takes the same steps on every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from training_core.config import EvalConfig, OptimConfig
from training_core.data import TrainSchedule
from training_core.evaluation import eval_due
from training_core.schedule import wsd_decay_start


@dataclass(frozen=True)
class BranchPlan:
    """A branch forked after ``fork_step`` main-run steps that trains ``cooldown_steps`` more."""

    fork_step: int
    cooldown_steps: int

    @property
    def end_step(self) -> int:
        """Optimizer steps the evaluated branch model has taken (main steps + cooldown)."""
        return self.fork_step + self.cooldown_steps


def cooldown_steps(fork_step: int, fraction: float) -> int:
    """``fraction`` of the steps done at the fork (all full batches there), at least one."""
    return max(int(round(fraction * fork_step)), 1)


def plan_branch(
    fork_step: int, total_steps: int, optim: OptimConfig, evals: EvalConfig
) -> BranchPlan | None:
    """The branch at an evaluation after ``fork_step`` steps, or None where a branch adds nothing:
    branches off, the initial model, a fork inside the main run's own final decay (the run is
    already cooling down), or a cooldown reaching the run's end (its final point is that model)."""
    if not evals.branches or fork_step <= 0:
        return None
    plan = BranchPlan(fork_step, cooldown_steps(fork_step, evals.cooldown_fraction))
    if fork_step >= wsd_decay_start(total_steps, optim) or plan.end_step >= total_steps:
        return None
    return plan


def eval_steps(sched: TrainSchedule, evals: EvalConfig) -> list[int]:
    """Steps done at every evaluation after the start (``eval_due``'s choice, found without
    walking every step: each rule's boundary gives a candidate that ``eval_due`` confirms)."""
    n, batch, total = sched.n_windows, sched.batch_size, sched.total_steps
    bounds = [e * n for e in evals.at_epochs]
    if evals.every_epochs is not None:
        per = evals.every_epochs * n
        bounds += [m * per for m in range(1, int(sched.total_samples / per + 1e-9) + 1)]
    done = {math.ceil((b - 1e-9) / batch) for b in bounds}
    if evals.every_steps is not None:
        done |= set(range(evals.every_steps, total + 1, evals.every_steps))
    done.add(total)
    near = {d + k for d in done for k in (-1, 0, 1)}
    return sorted(d for d in near if 1 <= d <= total and eval_due(d - 1, sched, evals))


def branch_plans(sched: TrainSchedule, optim: OptimConfig, evals: EvalConfig) -> list[BranchPlan]:
    """Every branch a run with this schedule takes (none when branches are off)."""
    if not evals.branches:
        return []
    plans = (plan_branch(d, sched.total_steps, optim, evals) for d in eval_steps(sched, evals))
    return [p for p in plans if p is not None]


@dataclass
class Snapshot:
    """Copies (on the tensors' own devices) of what a branch changes; a few model sizes of memory:
    the parameters and the two AdamW moments."""

    params: list[torch.Tensor]
    buffers: list[torch.Tensor]
    optim: list[dict[str, Any]]
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None


@torch.no_grad()
def take_snapshot(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Snapshot:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return Snapshot(
        params=[p.detach().clone() for p in model.parameters()],
        buffers=[b.detach().clone() for b in model.buffers()],
        optim=[{k: _clone(v) for k, v in optimizer.state.get(p, {}).items()} for p in params],
        rng_cpu=torch.get_rng_state(),
        rng_cuda=torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    )


@torch.no_grad()
def restore_snapshot(
    snap: Snapshot, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Put the model, optimizer and RNG back exactly as ``take_snapshot`` found them (in place,
    so a fused or sharded optimizer keeps its tensors where it put them)."""
    for p, saved in zip(model.parameters(), snap.params, strict=True):
        p.copy_(saved)
    for b, saved in zip(model.buffers(), snap.buffers, strict=True):
        b.copy_(saved)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p, saved in zip(params, snap.optim, strict=True):
        if not saved:
            optimizer.state.pop(p, None)
            continue
        state = optimizer.state[p]
        for key, value in saved.items():
            current = state.get(key)
            if torch.is_tensor(value) and torch.is_tensor(current) and current.shape == value.shape:
                current.copy_(value)
            else:
                state[key] = _clone(value)
    torch.set_rng_state(snap.rng_cpu)
    if snap.rng_cuda is not None:
        torch.cuda.set_rng_state(snap.rng_cuda)


def _clone(value: Any) -> Any:
    return value.detach().clone() if torch.is_tensor(value) else value
