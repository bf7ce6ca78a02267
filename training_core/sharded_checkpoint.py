"""Checkpoints of an FSDP2-sharded run, in the single-process format of ``checkpoint.py``.

The full model and optimizer state are gathered to rank 0's CPU (``get_*_state_dict`` with
``full_state_dict`` and ``cpu_offload``), which writes them with ``checkpoint.write_checkpoint``
(safetensors, no pickle); on resume every rank reads the files and keeps its own shards. A
checkpoint written with one world size resumes with another. ``checkpoint.py`` stays the one
writer of the files; this module only gathers and scatters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from training_core import checkpoint as ckpt
from training_core.data_parallel import Parallel


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
