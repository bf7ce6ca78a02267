"""Checkpoints as safetensors (model, optimizer moments, RNG) plus a JSON of trainer scalars.

Nothing is ever unpickled: safetensors holds only raw tensors and JSON only plain values, so
loading a checkpoint from an untrusted run directory cannot execute code.
The checkpoint directory is replaced atomically: written to ``ckpt.tmp-<pid>`` (one per writer)
then swapped in, so a crash mid-write leaves the previous checkpoint intact.

Verified before use: ``manifest.json`` (written last) holds every file's size and the step, the
safetensors headers must parse, and the checkpoint carries copies of the run's metrics/evals rows
up to its step, so a missing or truncated run file is rebuilt from it. A checkpoint that fails is
moved to ``ckpt.bad`` and the run falls back to ``ckpt.old`` or starts over; the event is appended
to ``checkpoint_events.jsonl`` in the run dir.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from formats.run_dir import CKPT_DIR, EVALS_FILE, METRICS_FILE

MODEL_FILE, OPTIM_FILE, STATE_FILE = "model.safetensors", "optim.safetensors", "state.json"
MANIFEST_FILE = "manifest.json"
EVENTS_FILE = "checkpoint_events.jsonl"
ROW_FILES = (METRICS_FILE, EVALS_FILE)  # copies of the run's rows up to the checkpoint's step
_MODEL, _OPTIM, _STATE = MODEL_FILE, OPTIM_FILE, STATE_FILE


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose state_dict has the plain parameter names (strips torch.compile)."""
    return getattr(model, "_orig_mod", model)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten per-parameter state to ``"<param index>.<key>"`` (index over all groups in order)."""
    flat: dict[str, torch.Tensor] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for idx, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            flat[f"{idx}.{key}"] = tensor.detach().to("cpu").contiguous().clone()
    return flat


def _load_optimizer(optimizer: torch.optim.Optimizer, flat: dict[str, torch.Tensor]) -> None:
    """Rebuild a state_dict and let the optimizer place each tensor (it knows fused/capturable)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = tensor
    groups = optimizer.state_dict()["param_groups"]  # hyperparameters come from the config
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
) -> Path:
    """Write model, optimizer and ``state`` (JSON-able scalars) to ``run_dir/ckpt``."""

    def write_model(path: Path) -> None:
        # save_model handles tied weights (one storage, two names) that save_file rejects.
        save_model(unwrap(model), str(path))

    return _write(run_dir, write_model, _optimizer_tensors(optimizer), state)


def write_checkpoint(
    run_dir: Path,
    model_tensors: dict[str, torch.Tensor],
    optim_tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> Path:
    """``save_checkpoint`` from tensors already gathered (FSDP2's full state on rank 0):
    ``model_tensors`` by parameter name (one name per tied weight), ``optim_tensors`` as
    ``"<param index>.<key>"``."""

    def write_model(path: Path) -> None:
        save_file(model_tensors, str(path))

    return _write(run_dir, write_model, dict(optim_tensors), state)


def _write(
    run_dir: Path,
    write_model: Callable[[Path], None],
    extra: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> Path:
    final = run_dir / CKPT_DIR
    _remove_stale_temps(run_dir)
    tmp = run_dir / f"{CKPT_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_model(tmp / _MODEL)
    extra["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        extra["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(extra, str(tmp / _OPTIM))
    (tmp / _STATE).write_text(json.dumps(state, indent=2, sort_keys=True))
    for name in ROW_FILES:  # the trainer flushed them just before: rows up to this step
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, tmp / name)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    manifest = {"step": state.get("step"), "files": files}
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    old = run_dir / f"{CKPT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(path: Path) -> dict[str, Any]:
    """The JSON trainer scalars of the checkpoint at ``path``."""
    return json.loads((path / _STATE).read_text())


def _remove_stale_temps(run_dir: Path) -> None:
    """Temp dirs of writers that died mid-write (their pid is gone from this host)."""
    for path in run_dir.glob(f"{CKPT_DIR}.tmp*"):
        pid = path.name.rpartition("-")[2]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def verify_checkpoint(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted, or None when it checks out: manifest
    sizes, readable safetensors headers, and the state's step equal to the manifest's."""
    try:
        state = read_state(path)
        if not (path / MANIFEST_FILE).exists():  # written before manifests: headers only
            manifest = {"step": state.get("step"), "files": {}}
        else:
            manifest = json.loads((path / MANIFEST_FILE).read_text())
        for name, size in manifest["files"].items():
            actual = (path / name).stat().st_size
            if actual != size:
                return f"{name}: {actual} bytes, manifest says {size}"
        for name in (_MODEL, _OPTIM):
            with safe_open(str(path / name), framework="pt") as handle:
                handle.keys()
        if state.get("step") != manifest["step"]:
            return f"state.json step {state.get('step')} != manifest step {manifest['step']}"
    except FileNotFoundError as err:
        return f"missing {Path(err.filename or '?').name}"
    except (OSError, ValueError, KeyError, TypeError, Exception) as err:  # safetensors' own errors
        return f"{type(err).__name__}: {str(err)[:200]}"
    return None


def record_event(run_dir: Path, **event: Any) -> None:
    """Append one checkpoint event (a bad checkpoint, a rebuilt row file) to the run's log."""
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **event})
    with (run_dir / EVENTS_FILE).open("a") as out:
        out.write(line + "\n")


def find_checkpoint(run_dir: Path, quarantine: bool = False) -> Path | None:
    """The latest checkpoint that verifies (``ckpt``, else ``ckpt.old`` after a crash mid-swap);
    None: start from scratch. ``quarantine`` (the run's writer only, never a reader racing a
    swap): move one that fails to ``ckpt.bad`` and record it."""
    for name in (CKPT_DIR, f"{CKPT_DIR}.old"):
        path = run_dir / name
        if not path.is_dir():
            continue
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        if not quarantine:
            continue
        bad = run_dir / f"{CKPT_DIR}.bad"
        shutil.rmtree(bad, ignore_errors=True)
        path.rename(bad)
        record_event(run_dir, checkpoint=name, problem=problem, action=f"moved to {bad.name}")
    return None


def checkpoint_step(run_dir: Path) -> int | None:
    """Step of the checkpoint a run in ``run_dir`` would resume from (None when there is none,
    or while one is being swapped in and neither copy can be read)."""
    path = find_checkpoint(run_dir)
    if path is None:
        return None
    try:
        return int(read_state(path)["step"])
    except (OSError, KeyError, ValueError):
        return None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore model and optimizer in place; returns the JSON state saved with them."""
    device = next(unwrap(model).parameters()).device
    load_model(unwrap(model), str(path / _MODEL), device=str(device))
    extra = load_file(str(path / _OPTIM))
    rng_cpu, rng_cuda = extra.pop("rng.cpu"), extra.pop("rng.cuda", None)
    _load_optimizer(optimizer, extra)
    torch.set_rng_state(rng_cpu)
    if rng_cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng_cuda)
    return read_state(path)
