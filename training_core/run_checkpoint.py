"""When a run writes its checkpoint, and what it takes back from one on resume.

A checkpoint at step s holds model and optimizer tensors, the trainer scalars (``Progress``) and
copies of the row files as they stood at s (``checkpoint.py``). Everything else is a function of
s (batch, noise, learning rate), so resuming restores those and drops every row written after s:
the steps they describe are redone and write the same rows again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training_core import hooks, run_io, sharded_checkpoint
from training_core.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from training_core.run_records import flush
from training_core.run_state import STATE_KEYS, Run


def checkpoint_run(run: Run) -> None:
    """Checkpoint the run at its current step (once per step), then call the hooks."""
    if run.last_ckpt_step == run.progress.step:
        return
    flush(run)  # rows first: a checkpoint never points past what the parquet files hold
    run.progress.wall_s = run.wall_s()
    if run.par.active:
        sharded_checkpoint.save_checkpoint(
            run.run_dir, run.model, run.optimizer, run.progress.state(), run.par
        )
    else:
        save_checkpoint(run.run_dir, run.model, run.optimizer, run.progress.state())
    run.last_ckpt_step = run.progress.step
    hooks.after_checkpoint(run.progress.step, resumed=run.resumed_from is not None)


def resume_from_checkpoint(run: Run) -> None:
    """Load the run dir's latest checkpoint that verifies into ``run``; with none, the run starts
    from step 0 (``find_checkpoint`` moves a damaged one aside)."""
    ckpt = find_checkpoint(run.run_dir, quarantine=run.par.is_main)
    if ckpt is None:
        return
    load = sharded_checkpoint.load_checkpoint if run.par.active else load_checkpoint
    state = load(ckpt, run.model, run.optimizer)
    p = run.progress
    for key in STATE_KEYS:
        setattr(p, key, state.get(key, getattr(p, key)))  # keys added later start at their default
    # Rows up to the checkpoint come from its own copies (a run file lost or truncated since is
    # rebuilt from them); rows written after it belong to steps that will be redone. A branch row
    # belongs to its fork step (a branch complete when the checkpoint's step was reached stays).
    p.metrics = [r for r in _resume_rows(run, ckpt, run_io.METRICS_FILE) if r["step"] <= p.step]
    p.evals = [
        r
        for r in _resume_rows(run, ckpt, run_io.EVALS_FILE)
        if (r["fork_step"] if r.get("kind") == "branch" else r["step"]) <= p.step
    ]
    if not any(r.get("kind") == "branch" and r.get("fork_step") == p.step for r in p.evals):
        p.evals += _branch_rows_after_checkpoint(run, p.step)
    run.last_ckpt_step = p.step
    run.resumed_from = p.step
    run.session_wall0 = p.wall_s


def _branch_rows_after_checkpoint(run: Run, step: int) -> list[dict[str, Any]]:
    """The branch row of the checkpoint's own step: written after the pre-branch checkpoint, so
    only the run dir's file has it. A damaged file gives none (the branch is then redone)."""
    try:
        rows = run_io.read_rows(run.run_dir / run_io.EVALS_FILE)
    except Exception:  # truncated or corrupt: redoing the branch is deterministic
        return []
    return [r for r in rows if r.get("kind") == "branch" and r.get("fork_step") == step]


def _resume_rows(run: Run, ckpt: Path, name: str) -> list[dict[str, Any]]:
    """The checkpoint's copy of a row file (checkpoints before copies: the run dir's file)."""
    copy = ckpt / name
    return run_io.read_rows(copy if copy.exists() else run.run_dir / name)
