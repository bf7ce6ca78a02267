"""Expand a `StudySpec` into resolved `RunConfig`s with stable run ids, and estimate their cost.

Run ids come from ``RunConfig.run_id`` (a hash of the full resolved config), so the grid of a
study is the same on every machine and a rerun finds finished runs by directory name. Before the
budgets exist (``--dry-run``) the grid is planned from the requested sizes: the same points, with
provisional ids (the data paths and exact token counts are not known yet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from flows.run_task import RunTask
from flows.spec import Resources, StudySpec
from formats.budget import BudgetManifest, DataConfig
from training_core.branches import branch_plans
from training_core.config import RunConfig
from training_core.data import TrainSchedule
from training_core.flops import flops_per_token
from training_core.model import ModelConfig, model_preset
from training_core.objectives import ObjectiveConfig

PLACEHOLDER_FILE = "<budget not built yet>"


@dataclass(frozen=True)
class PlannedRun:
    config: RunConfig
    label: str
    model_name: str
    objective: str
    unique_tokens: int
    epochs: float
    seed: int
    flops: float  # estimated training FLOPs of the whole run
    resources: Resources
    provisional: bool  # True when planned from requested sizes (no manifest yet)
    branch_flops: float = 0.0  # estimated FLOPs of its evaluation branches (eval.branches)
    replaced_flops: float = 0.0  # what separate runs to each branch's length would cost instead

    @property
    def run_id(self) -> str:
        return self.config.run_id

    def task(self, runs_root: Path) -> RunTask:
        return RunTask(
            run_id=self.run_id,
            label=self.label,
            config_json=self.config.model_dump_json(),
            run_dir=runs_root / self.run_id,
            cpus=self.resources.cpus,
            gpus=self.resources.gpus,
        )


def _fmt_tokens(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _epochs_for(spec: StudySpec, model: ModelConfig, name: str, unique: int) -> list[float]:
    if spec.epochs is not None:
        return list(spec.epochs)
    if spec.total_tokens is not None:
        return [spec.total_tokens / unique]
    assert spec.compute_flops is not None  # the spec validator guarantees one design
    # Compute budgets use the bidirectional (DLM) cost so both objectives train the same tokens.
    return [spec.compute_flops[name] / (flops_per_token(model, causal=False) * unique)]


def _data_configs(spec: StudySpec, manifests: list[BudgetManifest] | None) -> list[DataConfig]:
    if manifests is not None:
        return [m.data_config() for m in sorted(manifests, key=lambda m: m.unique_tokens)]
    vocab = spec.budgets.tokenizer.vocab_size
    return [
        DataConfig(
            train_files=(PLACEHOLDER_FILE,),
            vocab_size=vocab,
            unique_tokens=size,
            budget_id=f"planned_{size}",
        )
        for size in spec.budgets.sizes
    ]


def expand_grid(
    spec: StudySpec,
    manifests: list[BudgetManifest] | None = None,
    torch_threads: int | None = None,
) -> list[PlannedRun]:
    """All runs of the study, ordered objective-major as a reader expects; None plans a dry run.
    ``torch_threads``: CPU threads of every run (``CROSSOVER_TORCH_THREADS``), else its cpus.
    Threads change speed only: they are not part of the run id."""
    runs = []
    for data in _data_configs(spec, manifests):
        # The embedding has one extra row: the DLM mask token (AR keeps it so shapes match).
        models = {n: model_preset(n, data.vocab_size + 1, spec.seq_len) for n in spec.models}
        for objective in spec.objectives:
            for name, model in models.items():
                for epochs in _epochs_for(spec, model, name, data.unique_tokens):
                    for seed in spec.seeds:
                        run = _planned(spec, data, objective, name, model, epochs, seed)
                        if torch_threads is not None:  # not hashed: the run id stays
                            run = replace(run, config=_with_threads(run.config, torch_threads))
                        runs.append(run)
    runs.sort(key=lambda r: (r.objective, list(spec.models).index(r.model_name), r.unique_tokens))
    return runs


def _with_threads(config: RunConfig, threads: int) -> RunConfig:
    return RunConfig.model_validate({**config.model_dump(), "threads": threads})


def _planned(
    spec: StudySpec,
    data: DataConfig,
    objective: ObjectiveConfig,
    name: str,
    model: ModelConfig,
    epochs: float,
    seed: int,
) -> PlannedRun:
    config = RunConfig(
        model=model,
        objective=objective,
        optim=spec.optim,
        eval=spec.eval,
        data=data,
        epochs=epochs,
        seed=seed,
        device=spec.device,
        precision=spec.precision,
        compile=spec.compile,
        checkpoint_every_steps=spec.checkpoint_every_steps,
        threads=max(1, int(spec.resources.for_model(name).cpus)),
    )
    label = f"{objective.kind}/{name}/{_fmt_tokens(data.unique_tokens)}/ep{epochs:.4g}/s{seed}"
    fpt = flops_per_token(model, causal=objective.kind == "ar")
    branch, replaced = _branch_cost(config, fpt)
    return PlannedRun(
        config=config,
        label=label,
        model_name=name,
        objective=objective.kind,
        unique_tokens=data.unique_tokens,
        epochs=epochs,
        seed=seed,
        flops=fpt * data.unique_tokens * epochs,
        resources=spec.resources.for_model(name),
        provisional=data.train_files == (PLACEHOLDER_FILE,),
        branch_flops=branch,
        replaced_flops=replaced,
    )


def _branch_cost(config: RunConfig, fpt: float) -> tuple[float, float]:
    """FLOPs of a run's evaluation branches (cooldown steps), and of the separate runs to each
    branch's length that they stand in for. Branch steps are whole batches."""
    n_windows = config.data.unique_tokens // config.model.seq_len
    if not config.eval.branches or n_windows < 1:
        return 0.0, 0.0
    sched = TrainSchedule(n_windows, config.epochs, config.optim.batch_size, config.seed)
    plans = branch_plans(sched, config.optim, config.eval)
    per_step = fpt * config.optim.batch_size * config.model.seq_len
    return per_step * sum(p.cooldown_steps for p in plans), per_step * sum(
        p.end_step for p in plans
    )


def format_grid(runs: list[PlannedRun]) -> str:
    """The grid as a table with each run's tokens and FLOPs, and the totals (for --dry-run)."""
    lines = [f"{'run_id':<17}{'run':<34}{'train tokens':>14}{'FLOPs':>11}{'gpus':>6}"]
    for r in runs:
        tokens = int(r.unique_tokens * r.epochs)
        lines.append(
            f"{r.run_id:<17}{r.label:<34}{tokens:>14,}{r.flops:>11.2e}{r.resources.gpus:>6g}"
        )
    total = sum(r.flops for r in runs)
    gpu_runs = [r for r in runs if r.resources.gpus > 0]
    lines.append(f"{len(runs)} runs, {total:.3e} training FLOPs in all")
    branch = sum(r.branch_flops for r in runs)
    if branch > 0:
        replaced = sum(r.replaced_flops for r in runs)
        lines.append(
            f"evaluation branches: +{branch:.3e} FLOPs (+{100 * branch / total:.0f}% over the "
            f"runs' own training); separate runs to each branch's length would cost "
            f"{replaced:.3e} FLOPs"
        )
    if gpu_runs:
        # H100 bf16 dense peak ~989 TFLOP/s; 40% MFU is a realistic small-model rate.
        gpu_flops = sum(r.flops + r.branch_flops for r in gpu_runs)
        gpu_hours = gpu_flops / (0.4 * 989e12) / 3600
        lines.append(f"estimated cost: ~{gpu_hours:,.1f} H100 GPU-hours at 40% MFU (evals extra)")
    if any(r.provisional for r in runs):
        lines.append("(provisional run ids: budgets not built yet; ids change once they are)")
    return "\n".join(lines)
