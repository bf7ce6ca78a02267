"""Data-parallel FSDP2 training for ``train_run``: the few places where ranks differ.

``train_run`` stays one trainer. When ``torch.distributed`` is initialised with more than one
process (``python -m training_core.launch`` under torchrun), it asks this module for a
``Parallel`` and, through it, shards the model from outside (``parallel.apply_fsdp``), takes this
rank's rows of every batch, sums losses over ranks, and gathers full checkpoints. With one process
``Parallel()`` is the identity, so the single-process path computes exactly what it always did.

Batch split: the step's global batch is the single-process one; it is cut into the same
``grad_accum`` micro-batches, and rank ``r`` takes ``tensor_split(micro, world)[r]`` of each.
A rank's loss is weighted by ``world * its rows / batch rows`` because FSDP2 averages gradients
over ranks, so the reduced gradient is the single-process mean over the whole batch (AR: the same
numbers up to float summation order). A rank with no rows in a micro-batch (a short last step)
still runs one row with weight 0: every rank must join every FSDP collective.

Objective noise (DLM times and masks, AR input noise) is drawn by every rank for the whole
micro-batch from the stream seeded by (seed, step), as one process draws it; each rank then
scores its own rows (``Objective.loss(..., rows)``). A sharded DLM run therefore sees the very
masks of the single-process run and reaches the same numbers up to float summation order.

Checkpoints keep the single-process format (``checkpoint.py``: safetensors, no pickle): the full
model and optimizer state are gathered to rank 0's CPU (``get_*_state_dict`` with
``full_state_dict`` and ``cpu_offload``), which writes them; on resume every rank reads the files
and keeps its own shards. A checkpoint written with one world size resumes with another.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from training_core import checkpoint as ckpt
from training_core.config import RunConfig

_TIMEOUT = timedelta(minutes=30)  # evals run on every rank; a slow first compile must fit too


@dataclass(frozen=True)
class Parallel:
    """This process's place in the job: ``rank`` of ``world`` (the default: one process)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """The one rank that writes the run's files (metrics, evals, result, checkpoints)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_rows(self, n_rows: int, batch_rows: int) -> tuple[slice, float]:
        """This rank's rows of a micro-batch of ``n_rows`` (``tensor_split``'s cut: the first
        ``n_rows % world`` ranks get one more) and the loss weight that makes the rank-averaged
        gradient the mean over all ``batch_rows`` sequences of the step."""
        if not self.active:
            return slice(0, n_rows), n_rows / batch_rows
        base, extra = divmod(n_rows, self.world)
        start = self.rank * base + min(self.rank, extra)
        size = base + (self.rank < extra)
        if size == 0:
            return slice(0, 1), 0.0  # joins the collectives, contributes nothing
        return slice(start, start + size), self.world * size / batch_rows

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of ``value`` over ranks (in place; the identity with one process)."""
        if self.active:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def current() -> Parallel:
    """The job this process is part of: world > 1 only inside an initialised process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Parallel(dist.get_rank(), dist.get_world_size())
    return Parallel()


def init_from_env() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): nccl on CUDA, gloo on the
    CPU. Returns True when this call initialised it (the caller then calls ``shutdown``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=_TIMEOUT)
    return True


def shutdown() -> None:
    """Leave the process group cleanly: free what still refers to it, wait for every rank, then
    destroy it.

    FSDP2 modules and their optimizer sit in reference cycles (hooks that point back at their
    module), so CPython frees them only at a garbage collection, and without one that is during
    interpreter shutdown, after ``destroy_process_group``. Tensors with Python references freed by
    gloo's threads while the interpreter is torn down abort the process: the likely cause of the
    rare SIGABRT seen at teardown. Collecting first frees them while the group and the
    interpreter are both alive; the barrier keeps a fast rank from destroying the group under a
    slow one.
    """
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def device_for(device: torch.device) -> torch.device:
    """The device a rank trains on: its own GPU (set by ``init_from_env``), or the CPU."""
    if device.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def shard_model(
    model: torch.nn.Module, cfg: RunConfig, device: torch.device, par: Parallel
) -> torch.nn.Module:
    """FSDP2 over all ranks, applied from outside the model; call before building the optimizer
    (sharding replaces the parameters)."""
    from torch.distributed.device_mesh import init_device_mesh

    from training_core.parallel import apply_fsdp

    mesh = init_device_mesh(device.type, (par.world,))  # 1-D; a CPU mesh for gloo
    bf16 = device.type == "cuda" and cfg.precision == "bf16"
    return apply_fsdp(model, mesh, mixed_precision=bf16, compile=cfg.compile)


def reshard(model: torch.nn.Module) -> None:
    """Free the unsharded parameters FSDP2 keeps after a forward (the root and the last block do
    not reshard after forward), so ``model.parameters()`` are this rank's shards again: what an
    evaluation branch snapshots and restores."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def full_norm(norm: torch.Tensor) -> float:
    """A grad norm as a float; FSDP2's is a DTensor that must be reduced over ranks first."""
    from torch.distributed.tensor import DTensor

    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def _options(**kw: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def _aliases(model: torch.nn.Module) -> dict[int, list[str]]:
    """Parameter id -> every name it has (tied embeddings have two), sorted."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {k: sorted(v) for k, v in names.items()}


def _optimizer_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Per optimizer parameter (groups in order: the index ``checkpoint.py`` uses), the name
    the state-dict API keys it by (a tied weight's first registered name)."""
    canonical = {id(p): name for name, p in model.named_parameters()}
    return [canonical[id(p)] for group in optimizer.param_groups for p in group["params"]]


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    par: Parallel,
) -> None:
    """Gather full model and optimizer state to rank 0, which writes ``checkpoint.py``'s format.
    Collective: every rank calls it at the same step."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    model = ckpt.unwrap(model)
    opts = _options(cpu_offload=True)  # full tensors on rank 0's CPU only, one at a time
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if par.is_main:
        tensors = {k: v.contiguous() for k, v in msd.items()}
        for names in _aliases(model).values():  # one copy per tied weight, as save_model does
            for extra in names[1:]:
                tensors.pop(extra, None)
        flat: dict[str, torch.Tensor] = {}
        for idx, name in enumerate(_optimizer_names(model, optimizer)):
            for key, value in osd["state"].get(name, {}).items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                flat[f"{idx}.{key}"] = tensor.detach().cpu().contiguous().clone()
        ckpt.write_checkpoint(run_dir, tensors, flat, state)
    par.barrier()  # nobody reads or overwrites the checkpoint before it is complete


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Every rank reads the full checkpoint and keeps its shards; returns the JSON state."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model = ckpt.unwrap(model)
    full = load_file(str(path / ckpt.MODEL_FILE))
    for names in _aliases(model).values():  # give tied names their one stored tensor back
        stored = next((n for n in names if n in full), None)
        for name in names:
            if stored is not None and name not in full:
                full[name] = full[stored]
    set_model_state_dict(model, full, options=_options())
    extra = load_file(str(path / ckpt.OPTIM_FILE))
    extra.pop("rng.cpu"), extra.pop("rng.cuda", None)  # noise is re-seeded every step anyway
    fqn = _optimizer_names(model, optimizer)
    osd_state: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in extra.items():
        idx, name = key.split(".", 1)
        osd_state.setdefault(fqn[int(idx)], {})[name] = tensor
    groups, start = [], 0
    for group in optimizer.param_groups:
        n = len(group["params"])
        hyper = {k: v for k, v in group.items() if k != "params"}
        groups.append({**hyper, "params": fqn[start : start + n]})
        start += n
    osd = {"state": osd_state, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, osd, options=_options())
    return ckpt.read_state(path)
