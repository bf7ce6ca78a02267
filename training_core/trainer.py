"""``train_run``: one training loop for both objectives, with evals, checkpoints and exact resume.

The loop never asks which objective it runs: the objective object computes the loss and says
whether attention is causal; data order, batch, schedule, optimizer and evals are identical for
AR and DLM (the matched comparison the study rests on).

Determinism: the batch of step s is a function of (seed, s) (``data.TrainSchedule``), the
objective's noise generator is re-seeded from (seed, s) before every step, and the learning rate
is a function of s. A checkpoint at step s therefore only needs model and optimizer tensors to
resume exactly where an uninterrupted run would be.

Evaluation points, and the cooldown branches forked at them (``eval.branches``), are run by
``eval_points.py``; a branch is a pure function of the pre-branch checkpoint, like every step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training_core import data_parallel, run_io
from training_core.config import RunConfig
from training_core.data import TokenWindows, TrainSchedule
from training_core.data_parallel import Parallel
from training_core.eval_points import evaluate_now, evaluation_point, resume_branch
from training_core.evaluation import eval_due, load_eval_data
from training_core.flops import flops_per_token
from training_core.model import Transformer
from training_core.objectives import build_objective
from training_core.run_checkpoint import checkpoint_run, resume_from_checkpoint
from training_core.run_io import RunResult
from training_core.run_records import finish, flush, metrics_row, progress_event
from training_core.run_state import Run
from training_core.schedule import main_scheduler
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
    _check_owner(cfg, run_dir)
    done = run_io.read_result(run_dir)
    par.barrier()  # every rank has read result.json before rank 0 may remove a failed one
    if done is not None and done.completed:
        return done
    if par.is_main:
        _claim_run_dir(cfg, run_dir)
    par.barrier()
    started_at = run_io.now_iso()
    run = None
    try:
        run = _setup(cfg, run_dir, started_at, par)
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


def _check_owner(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a run directory whose config.json belongs to a different run."""
    path = run_dir / run_io.CONFIG_FILE
    if path.exists():
        other = RunConfig.model_validate(run_io.read_json(path))
        if other.run_id != cfg.run_id:
            raise ValueError(f"run_dir: {run_dir} holds run {other.run_id}, not {cfg.run_id}")


def _claim_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """Write config.json; drop the result.json of a failed attempt (it is retried)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / run_io.CONFIG_FILE
    (run_dir / run_io.RESULT_FILE).unlink(missing_ok=True)
    run_io.write_json(path, cfg.model_dump(mode="json"))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' requested but CUDA is not available")
    return torch.device(name)


def _setup(cfg: RunConfig, run_dir: Path, started_at: str, par: Parallel) -> Run:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg.device)
    if par.active:
        device = data_parallel.device_for(device)
    torch.manual_seed(cfg.seed)  # the model's initial weights (the same full model on every rank)
    with torch.device(device):  # initialise in place: no CPU copy of a large model
        model = Transformer(cfg.model)
    if par.active:  # before the optimizer: sharding replaces the parameters
        model = data_parallel.shard_model(model, cfg, device, par)
    if par.active and cfg.loss_impl != "plain":  # the sharded LM head is only whole in forward
        raise ValueError(f"loss_impl: {cfg.loss_impl!r} is single-process only; use 'plain'")
    objective = build_objective(cfg.objective, cfg.mask_id, cfg.loss_impl)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norms: decay would fight the gain
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        eps=cfg.optim.eps,
        fused=device.type == "cuda" and not par.active,  # one kernel for all params on one GPU
    )
    train = TokenWindows(cfg.data.train_files, cfg.data.token_dtype, cfg.model.seq_len)
    if train.n_tokens != cfg.data.unique_tokens:  # stale config or wrong files: never guess
        raise ValueError(
            f"data.unique_tokens: config says {cfg.data.unique_tokens}, "
            f"train_files hold {train.n_tokens} tokens"
        )
    sched = TrainSchedule(len(train), cfg.epochs, cfg.optim.batch_size, cfg.seed)
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        model=model,
        objective=objective,
        optimizer=optimizer,
        train=train,
        sched=sched,
        eval_data=load_eval_data(cfg),
        fpt=float(flops_per_token(cfg.model, causal=objective.causal)),
        started_at=started_at,
        par=par,
    )
    resume_from_checkpoint(run)
    run.scheduler = main_scheduler(optimizer, sched.total_steps, cfg.optim, run.progress.step)
    if cfg.compile and not par.active:  # sharded runs compile per block in apply_fsdp
        run.model = torch.compile(model)
    return run


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
