"""Data-parallel FSDP2 training for ``train_run``: the few places where ranks differ.

``train_run`` stays one trainer. When ``torch.distributed`` is initialised with more than one
process (``python -m training_core.launch`` under torchrun), it asks this module for a
``Parallel`` and, through it, shards the model from outside (``fsdp.apply_fsdp``), takes this
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

Checkpoints of a sharded run: ``sharded_checkpoint.py`` (gathered to rank 0, written in
``checkpoint.py``'s single-process format). FSDP2 itself is applied by ``fsdp.py``.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

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

    from training_core.fsdp import apply_fsdp

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
