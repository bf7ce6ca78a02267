"""Evaluation points of a run: evaluate the main run as it stands, or fork a cooldown branch.

At an evaluation point (``evaluation.eval_due``) with a planned branch (``branches.plan_branch``,
``eval.branches``) the run is checkpointed first, then forked in memory, cooled down from the
stable rate to the floor on the continuation of its own batches and noise, evaluated, and
restored. A kill inside a branch resumes from that pre-branch checkpoint and re-runs the branch
from its start, which reproduces it exactly (the branch is a pure function of the checkpoint,
like every step). Elsewhere the main run itself is evaluated (``kind`` "mid-run" or "final").
"""

from __future__ import annotations

from training_core import data_parallel, hooks
from training_core.branches import BranchPlan, plan_branch, restore_snapshot, take_snapshot
from training_core.evaluation import evaluate
from training_core.run_checkpoint import checkpoint_run
from training_core.run_records import eval_row, flush
from training_core.run_state import Run
from training_core.schedule import cooldown_scheduler, lr_at, main_scheduler
from training_core.train_step import check_nonfinite, optimizer_step


def evaluation_point(run: Run) -> None:
    """An evaluation after the step just taken: a cooldown branch where one is planned (after a
    pre-branch checkpoint), else an evaluation of the main run itself."""
    p = run.progress
    plan = plan_branch(p.step, run.sched.total_steps, run.cfg.optim, run.cfg.eval)
    if plan is None:
        evaluate_now(run, "final" if p.step == run.sched.total_steps else "mid-run")
        return
    checkpoint_run(run)
    _branch(run, plan)


def resume_branch(run: Run) -> None:
    """On resume at an evaluation point: run its branch if the branch row is missing. A row that
    is there was written after the (pre-branch) checkpoint: its ``run_flops`` carries the
    branch's compute, which the checkpoint's scalars do not."""
    p = run.progress
    plan = plan_branch(p.step, run.sched.total_steps, run.cfg.optim, run.cfg.eval)
    done = [r for r in p.evals if r.get("kind") == "branch" and r.get("fork_step") == p.step]
    if done:
        p.branch_flops = done[-1]["run_flops"] - p.flops
    elif plan is not None:
        _branch(run, plan)


def _branch(run: Run, plan: BranchPlan) -> None:
    """Fork, cool down from the current rate to the floor on the next batches, evaluate, restore."""
    p, cfg = run.progress, run.cfg
    if run.par.active:
        data_parallel.reshard(run.model)
    snapshot = take_snapshot(run.model, run.optimizer)
    start = lr_at(plan.fork_step, run.sched.total_steps, cfg.optim)  # the stable rate
    floor = cfg.optim.lr * cfg.optim.min_lr_ratio
    cooldown = cooldown_scheduler(
        run.optimizer, cfg.optim.lr, plan.cooldown_steps, start, floor, cfg.eval.decay
    )
    flops, nonfinite = 0.0, 0
    for k in range(plan.cooldown_steps):
        stats = optimizer_step(run, plan.fork_step + k, cooldown)
        if not stats.finite:
            nonfinite += 1
            check_nonfinite(nonfinite, cfg.max_nonfinite, stats, plan.fork_step + k)
        flops += run.fpt * stats.tokens
        hooks.after_branch_step(
            plan.fork_step, k + 1, plan.cooldown_steps, resumed=run.resumed_from is not None
        )
    p.branch_flops += flops
    samples = run.sched.samples_after(plan.end_step - 1)
    evaluate_now(run, "branch", plan.end_step, samples, p.flops + flops, plan.fork_step)
    if run.par.active:
        data_parallel.reshard(run.model)  # restore the shards, not a stale unsharded copy
    restore_snapshot(snapshot, run.model, run.optimizer)
    # The main schedule again, at the fork step (the cooldown's scheduler set the groups' rates).
    run.scheduler = main_scheduler(run.optimizer, run.sched.total_steps, cfg.optim, p.step)


def evaluate_now(
    run: Run,
    kind: str,
    step: int | None = None,
    samples: int | None = None,
    flops: float | None = None,
    fork_step: int | None = None,
) -> None:
    """Evaluate the model as it is now: the main run's (step, samples, flops) unless a branch
    passes its own. ``flops`` is the evaluated model's training compute, ``run_flops`` all the
    compute the run has spent so far (branches included)."""
    p, cfg = run.progress, run.cfg
    step = p.step if step is None else step
    samples = p.samples if samples is None else samples
    out = evaluate(run.model, cfg, run.objective.causal, run.eval_data, run.device, run.autocast)
    flops = p.flops if flops is None else flops
    p.evals.append(eval_row(run, out, kind, step, samples, flops, fork_step))
    flush(run)
