"""``train_run``: one training loop for both objectives, with evals, checkpoints and exact resume.

The loop never asks which objective it runs: the objective object computes the loss and says
whether attention is causal; data order, batch, schedule, optimizer and evals are identical for
AR and DLM (the matched comparison the study rests on).

Determinism: the batch of step s is a function of (seed, s) (``data.TrainSchedule``), the
objective's noise generator is re-seeded from (seed, s) before every step, and the learning rate
is a function of s. A checkpoint at step s therefore only needs model and optimizer tensors to
resume exactly where an uninterrupted run would be.

The loop is here; the rest of the trainer is split by what it does:
- ``run_setup.py``: claim the run dir, build model, objective, optimizer and data, resume;
- ``train_step.py``: one optimizer step on the batch and noise of step s (main run and branches);
- ``eval_points.py``: evaluation points, and the cooldown branches forked at them
  (``eval.branches``; a branch is a pure function of the pre-branch checkpoint, like every step);
- ``run_checkpoint.py``: when a checkpoint is written and what a resume takes back from it;
- ``run_records.py``: metrics and eval rows, the progress event, result.json;
- ``run_state.py``: the ``Run`` and ``Progress`` these functions share.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_core import data_parallel, run_io
from training_core.config import RunConfig
from training_core.eval_points import evaluate_now, evaluation_point, resume_branch
from training_core.evaluation import eval_due
from training_core.run_checkpoint import checkpoint_run
from training_core.run_io import RunResult
from training_core.run_records import finish, flush, metrics_row, progress_event
from training_core.run_setup import build_run, check_owner, claim_run_dir
from training_core.run_state import Run
from training_core.train_step import NonFiniteLoss, check_nonfinite, optimizer_step

ProgressFn = Callable[[dict[str, Any]], None]
_METRICS_FLUSH_EVERY = 50  # steps between metrics.parquet rewrites (also at every eval/ckpt)


class StopRun(Exception):
    """Raise from ``on_progress`` to stop a run early: it checkpoints and re-raises, leaving no
    result.json, so calling ``train_run`` again resumes (a clean stand-in for a killed run)."""


def train_run(cfg: RunConfig, run_dir: Path, on_progress: ProgressFn | None = None) -> RunResult:
    """Train ``cfg`` in ``run_dir``: skip if completed, resume if checkpointed (docs/design.md).

    Inside an initialised process group of several ranks (``training_core.launch``), every rank
    calls this; the model is FSDP2-sharded and rank 0 alone writes files (``data_parallel.py``).
    ``on_progress`` then runs on every rank and must decide the same way on all of them.
    """
    run_dir = Path(run_dir)
    par = data_parallel.current()
    check_owner(cfg, run_dir)
    done = run_io.read_result(run_dir)
    par.barrier()  # every rank has read result.json before rank 0 may remove a failed one
    if done is not None and done.completed:
        return done
    if par.is_main:
        claim_run_dir(cfg, run_dir)
    par.barrier()
    started_at = run_io.now_iso()
    run = None
    try:
        run = build_run(cfg, run_dir, started_at, par)
        return _train(run, on_progress)
    except StopRun:
        raise
    except NonFiniteLoss as err:
        return finish(run, cfg, run_dir, started_at, failure=str(err), par=par)
    except Exception as err:
        finish(run, cfg, run_dir, started_at, failure=f"{type(err).__name__}: {err}", par=par)
        raise


def record_failure(cfg: RunConfig, run_dir: Path, reason: str) -> RunResult:
    """Write a failed result.json for a run that died before ``train_run`` could (e.g. a rank of
    a multi-process run killed from outside); returns it."""
    return finish(None, cfg, Path(run_dir), run_io.now_iso(), failure=reason)


def _train(run: Run, on_progress: ProgressFn | None) -> RunResult:
    p, cfg = run.progress, run.cfg
    run.model.train()
    if p.step == 0 and cfg.eval.at_start and not p.evals:
        evaluate_now(run, "mid-run")
    elif 0 < p.step < run.sched.total_steps and eval_due(p.step - 1, run.sched, cfg.eval):
        resume_branch(run)  # killed inside the branch of the checkpoint's step: redo it
    while p.step < run.sched.total_steps:
        _train_step(run)
        evaluated = eval_due(p.step - 1, run.sched, cfg.eval)
        if evaluated:
            evaluation_point(run)
        every = cfg.checkpoint_every_steps
        if evaluated or (every is not None and p.step % every == 0):
            checkpoint_run(run)
        elif p.step % _METRICS_FLUSH_EVERY == 0:
            flush(run)
        if on_progress is not None:
            try:
                on_progress(progress_event(run))
            except StopRun:
                checkpoint_run(run)
                raise
    flush(run)
    return finish(run, cfg, run.run_dir, run.started_at, failure=None, par=run.par)


def _train_step(run: Run) -> None:
    """One main-run optimizer step: the scheduled learning rate, then progress and metrics."""
    p, cfg = run.progress, run.cfg
    step = p.step
    lr = run.scheduler.get_last_lr()[0]  # lr_at(step): the scheduler stands at this step
    stats = optimizer_step(run, step, run.scheduler)
    if not stats.finite:
        p.nonfinite += 1
        check_nonfinite(p.nonfinite, cfg.max_nonfinite, stats, step)
    p.step, p.samples = step + 1, run.sched.samples_after(step)
    p.flops += run.fpt * stats.tokens
    p.train_wall_s += stats.seconds
    p.metrics.append(metrics_row(run, lr, stats))
