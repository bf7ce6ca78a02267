"""What evaluation branches cost the demo, from short timed runs of its real configs.

Usage: python bench/bench_demo_branches.py [--home HOME] [--epochs 4]
(the demo's budgets are built under HOME/budgets, or reused when already there, as
``flows run budgets --preset demo --home HOME`` does; without --home in a temporary folder.)

For each objective on the 100K budget, two short runs of the demo's exact model, data, batch and
evaluation settings, ``--epochs`` long with evaluations at 1/4 and 1/2 of it: the cosine + mid-run
mode and the WSD + branches mode. Each run's training tokens/s comes from its result.json; the
evaluation cost is the rest of its wall time per evaluation. With them, the demo's whole sweep
(4 runs, 2 at a time) is priced in both modes by counting training tokens (branches included,
from the planner) and evaluations; the ratio of the two prices the branched demo against the
measured wall time of the cosine demo.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from flows.grid import expand_grid
from flows.spec import load_spec, preset_path
from pipeline import build_budgets
from training_core import RunConfig, train_run
from training_core.branches import branch_plans, eval_steps
from training_core.data import TrainSchedule

COSINE_GRID = (1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 28, 32, 40, 48, 64, 80)


def _variant(cfg: RunConfig, branches: bool, **changes: object) -> RunConfig:
    data = cfg.model_dump()
    data["optim"]["schedule"] = "wsd" if branches else "cosine"
    data["eval"]["branches"] = branches
    for key, value in changes.items():
        if "__" in key:  # section__field
            section, name = key.split("__")
            data[section][name] = value
        else:
            data[key] = value
    return RunConfig.model_validate(data)


def _timed(cfg: RunConfig, run_dir: Path) -> tuple[float, float, int]:
    """(training tokens/s, seconds per evaluation, evaluations) of one short run."""
    result = train_run(cfg, run_dir)
    n_evals = len(pd.read_parquet(run_dir / "evals.parquet"))
    # tokens_per_s times the main run's steps; branch steps are priced at the same rate.
    tokens = result.tokens_seen + result.branch_flops / result.flops_per_token
    train_s = tokens / result.tokens_per_s
    return result.tokens_per_s, (result.wall_s - train_s) / n_evals, n_evals


def _demo_cost(cfg: RunConfig, branches: bool) -> tuple[float, int]:
    """(training tokens incl. branches, evaluations) of one demo run in a mode."""
    n_windows = cfg.data.unique_tokens // cfg.model.seq_len
    sched = TrainSchedule(n_windows, cfg.epochs, cfg.optim.batch_size, cfg.seed)
    per_step = cfg.optim.batch_size * cfg.model.seq_len
    plans = branch_plans(sched, cfg.optim, cfg.eval) if branches else []
    tokens = sched.total_samples * cfg.model.seq_len + per_step * sum(
        p.cooldown_steps for p in plans
    )
    return tokens, len(eval_steps(sched, cfg.eval)) + int(cfg.eval.at_start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--epochs", type=float, default=4.0)
    args = ap.parse_args()
    spec = load_spec(preset_path("demo"))
    rate: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        runs = expand_grid(spec, build_budgets(spec.budgets, home / "budgets"))
        for run in runs:
            if run.unique_tokens < 50_000:
                continue
            at = (args.epochs / 4, args.epochs / 2)
            for branches in (False, True):
                cfg = _variant(run.config, branches, epochs=args.epochs, eval__at_epochs=at)
                tok_s, eval_s, n = _timed(cfg, Path(tmp) / f"{run.objective}_{branches}")
                print(
                    f"{run.objective} branches={branches}: {tok_s:,.0f} train tok/s, "
                    f"{eval_s:.1f} s per eval ({n} evals)"
                )
            rate[run.objective] = (tok_s, eval_s)
    for branches in (False, True):
        total = 0.0
        for run in runs:
            grid = spec.eval.at_epochs if branches else COSINE_GRID
            cfg = _variant(run.config, branches, eval__at_epochs=grid)
            tokens, n_evals = _demo_cost(cfg, branches)
            tok_s, eval_s = rate[run.objective]
            total += tokens / tok_s + n_evals * eval_s
        print(
            f"demo sweep, branches={branches}: {total / 60:.1f} run-minutes in all "
            f"(~{total / 120:.1f} min wall at 2 runs at a time)"
        )


if __name__ == "__main__":
    main()
