"""What a run records as it trains: metrics and eval rows, the progress event, and result.json.

Every rank builds the same rows; rank 0 alone writes them. ``flush`` rewrites each row file whole
from the rows in memory, so flushing twice writes the same file and a resumed run, whose rows
were cut back to its checkpoint (``run_checkpoint``), never duplicates a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training_core import run_io
from training_core.config import RunConfig
from training_core.data_parallel import Parallel
from training_core.flops import param_counts
from training_core.run_io import RunResult
from training_core.run_state import Progress, Run
from training_core.train_step import StepStats


def metrics_row(run: Run, lr: float, stats: StepStats) -> dict[str, Any]:
    """The metrics.parquet row of the main-run step just counted in ``run.progress``, taken at
    learning rate ``lr``."""
    p, cfg = run.progress, run.cfg
    return {
        "run_id": cfg.run_id,
        "step": p.step,
        "tokens_seen": p.samples * cfg.model.seq_len,
        "epoch": p.samples / run.sched.n_windows,
        "train_loss": stats.loss,
        "lr": lr,
        "grad_norm": stats.grad_norm,
        "tokens_per_s": stats.tokens / stats.seconds if stats.seconds > 0 else None,
    }


def eval_row(
    run: Run,
    out: dict[str, Any],
    kind: str,
    step: int,
    samples: int,
    flops: float,
    fork_step: int | None,
) -> dict[str, Any]:
    """The evals.parquet row of evaluation results ``out`` of a model trained ``step`` steps on
    ``samples`` windows with ``flops``; ``run_flops`` is all the run has spent so far."""
    p, cfg = run.progress, run.cfg
    return {
        "run_id": cfg.run_id,
        "step": step,
        "tokens_seen": samples * cfg.model.seq_len,
        "epoch": samples / run.sched.n_windows,
        "flops": flops,
        **{k: _finite_or_none(v) for k, v in out.items()},
        "kind": kind,
        "fork_step": fork_step,
        "run_flops": p.flops + p.branch_flops,
    }


def flush(run: Run) -> None:
    """Rewrite metrics.parquet and evals.parquet from the rows in memory (rank 0)."""
    if not run.par.is_main:
        return
    run_io.write_rows(
        run.run_dir / run_io.METRICS_FILE, run.progress.metrics, run_io.METRICS_SCHEMA
    )
    run_io.write_rows(run.run_dir / run_io.EVALS_FILE, run.progress.evals, run_io.EVALS_SCHEMA)


def progress_event(run: Run) -> dict[str, Any]:
    """What ``on_progress`` gets after each main-run step."""
    p = run.progress
    last = p.metrics[-1]
    return {
        "run_id": run.cfg.run_id,
        "step": p.step,
        "total_steps": run.sched.total_steps,
        "epoch": last["epoch"],
        "train_loss": last["train_loss"],
        "tokens_per_s": last["tokens_per_s"],
    }


def finish(
    run: Run | None,
    cfg: RunConfig,
    run_dir: Path,
    started_at: str,
    failure: str | None,
    par: Parallel | None = None,
) -> RunResult:
    """Write (rank 0) and return result.json; ``run`` is None when setup itself failed."""
    counts = _safe_param_counts(cfg)
    p = run.progress if run is not None else Progress()
    evals = p.evals
    last_eval = evals[-1] if evals else {}
    result = RunResult(
        run_id=cfg.run_id,
        status="failed" if failure else "completed",
        failure_reason=failure,
        objective=cfg.objective.kind,
        model_name=cfg.model.name,
        n_params=counts.get("total", 0),
        n_params_nonembed=counts.get("non_embedding", 0),
        n_params_active=counts.get("active", 0),
        flops_per_token=run.fpt if run is not None else 0.0,
        unique_tokens=cfg.data.unique_tokens,
        epochs=cfg.epochs,
        seed=cfg.seed,
        budget_id=cfg.data.budget_id,
        steps=p.step,
        tokens_seen=p.samples * cfg.model.seq_len,
        total_flops=p.flops,
        branch_flops=p.branch_flops,
        final_val_loss=last_eval.get("val_loss"),
        best_val_loss=_best(evals, "val_loss", min),
        final_mc_acc=last_eval.get("mc_acc"),
        best_mc_acc=_best(evals, "mc_acc", max),
        wall_s=run.wall_s() if run is not None else 0.0,
        tokens_per_s=p.samples * cfg.model.seq_len / p.train_wall_s if p.train_wall_s else 0.0,
        started_at=started_at,
        finished_at=run_io.now_iso(),
        code_version=run_io.code_version(),
    )
    if run is not None:
        flush(run)
    if par is None or par.is_main:
        run_io.write_result(run_dir, result)
    return result


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _best(rows: list[dict[str, Any]], key: str, pick: Callable) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return pick(values) if values else None


def _safe_param_counts(cfg: RunConfig) -> dict[str, int]:
    try:
        return dict(param_counts(cfg.model))
    except Exception:  # a failure report must not fail on the config that broke the run
        return {}
