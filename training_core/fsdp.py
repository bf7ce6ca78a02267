"""Parallelism applied from outside the model, in torchtitan's order.

activation checkpointing -> compile -> ``fully_shard`` each block -> ``fully_shard`` the root.
The model file stays single-device; everything distributed lives here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint

from training_core.model import Transformer


def checkpoint_block(block: nn.Module) -> None:
    """Recompute ``block``'s activations in the backward instead of storing them.

    Wraps the bound ``forward`` in place (not a wrapper module) so parameter names, and so
    checkpoints, are the same with and without it.
    """
    inner = block.forward

    def forward(*args, **kwargs):
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    block.forward = forward


def apply_fsdp(
    model: Transformer,
    mesh: DeviceMesh,
    mixed_precision: bool,
    activation_checkpointing: bool = False,
    compile: bool = False,
) -> Transformer:
    """Shard ``model`` over the 1-D ``mesh`` with FSDP2; returns the same (now sharded) module.

    ``mixed_precision``: bf16 parameters in compute, fp32 gradient reduction (use on CUDA).
    Blocks do not cast their inputs: the RoPE tables passed to every block must stay fp32.
    """
    blocks = list(model.layers)
    if activation_checkpointing:
        for block in blocks:
            checkpoint_block(block)
    if compile:
        for block in blocks:  # per block: one graph reused by every layer, fast to compile
            block.compile()
    if mixed_precision:
        root_mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        block_mp = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    else:
        root_mp = block_mp = MixedPrecisionPolicy()
    for i, block in enumerate(blocks):
        # The last block's parameters are needed again at once by the backward: keep them.
        fully_shard(block, mesh=mesh, mp_policy=block_mp, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(model, mesh=mesh, mp_policy=root_mp)
    return model
