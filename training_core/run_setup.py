"""Build a ``Run`` from its config: claim the run dir, place and shard the model, build the
objective, optimizer and data, and resume from the run dir's checkpoint when there is one.

The model's initial weights come from ``torch.manual_seed(cfg.seed)`` right before it is built,
so every rank (and every retry) starts from the same full model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training_core import data_parallel, run_io
from training_core.config import OptimConfig, RunConfig
from training_core.data import TokenWindows, TrainSchedule
from training_core.data_parallel import Parallel
from training_core.evaluation import load_eval_data
from training_core.flops import flops_per_token
from training_core.model import Transformer
from training_core.objectives import build_objective
from training_core.run_checkpoint import resume_from_checkpoint
from training_core.run_state import Run
from training_core.schedule import main_scheduler


def check_owner(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse a run directory whose config.json belongs to a different run."""
    path = run_dir / run_io.CONFIG_FILE
    if path.exists():
        other = RunConfig.model_validate(run_io.read_json(path))
        if other.run_id != cfg.run_id:
            raise ValueError(f"run_dir: {run_dir} holds run {other.run_id}, not {cfg.run_id}")


def claim_run_dir(cfg: RunConfig, run_dir: Path) -> None:
    """Write config.json; drop the result.json of a failed attempt (it is retried)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / run_io.CONFIG_FILE
    (run_dir / run_io.RESULT_FILE).unlink(missing_ok=True)
    run_io.write_json(path, cfg.model_dump(mode="json"))


def resolve_device(name: str) -> torch.device:
    """The config's ``device``: "auto" is CUDA when there is one; "cuda" without one fails."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' requested but CUDA is not available")
    return torch.device(name)


def build_run(cfg: RunConfig, run_dir: Path, started_at: str, par: Parallel) -> Run:
    """Everything ``cfg`` trains with, at step 0 or at the run dir's checkpoint."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
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
    fused = device.type == "cuda" and not par.active  # one kernel for all params on one GPU
    optimizer = build_optimizer(model, cfg.optim, fused)
    train = _train_windows(cfg)
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


def build_optimizer(model: torch.nn.Module, optim: OptimConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW over ``model``'s parameters, weight decay on matrices only; ``fused``: torch's
    single-kernel update."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norms: decay would fight the gain
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        fused=fused,
    )


def _train_windows(cfg: RunConfig) -> TokenWindows:
    """The run's training windows; refuses files whose token count is not the config's."""
    train = TokenWindows(cfg.data.train_files, cfg.data.token_dtype, cfg.model.seq_len)
    if train.n_tokens != cfg.data.unique_tokens:  # stale config or wrong files: never guess
        raise ValueError(
            f"data.unique_tokens: config says {cfg.data.unique_tokens}, "
            f"train_files hold {train.n_tokens} tokens"
        )
    return train
