"""FSDP2 on the CPU (gloo, 2 processes): a sharded run reaches the single-process losses."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh

from training_core.data_parallel import shutdown
from training_core.fsdp import apply_fsdp
from training_core.model import Transformer, model_preset
from training_core.objectives import ObjectiveConfig, build_objective

V, SEQ, BATCH, STEPS, WORLD = 29, 16, 8, 4, 2


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(model_preset("tiny", V, SEQ))


def _batch() -> torch.Tensor:
    return torch.randint(0, V - 1, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))


def _train(model: torch.nn.Module, tokens: torch.Tensor) -> list[float]:
    """A few AdamW steps of the AR loss; returns the local loss of each step."""
    obj = build_objective(ObjectiveConfig(kind="ar"), mask_id=V - 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(STEPS):
        loss, _ = obj.loss(model, tokens, torch.Generator())
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    return losses


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",  # a file rendezvous: no port to pick and race for
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=300),
    )
    try:
        mesh = init_device_mesh("cpu", (WORLD,))
        shard = _batch().chunk(WORLD)[rank]  # equal halves: mean of local means = global mean
        losses: dict[str, list[float]] = {}
        for name, bf16 in (("fp32", False), ("bf16", True)):
            model = apply_fsdp(_model(), mesh, mixed_precision=bf16, activation_checkpointing=True)
            losses[name] = []
            for loss in _train(model, shard):
                dist.all_reduce(loss)
                losses[name].append(float(loss) / WORLD)
        # torchtitan's order: build on meta, shard, materialise, initialise the local shards.
        with torch.device("meta"):
            model = Transformer(model_preset("tiny", V, SEQ))
        apply_fsdp(model, mesh, mixed_precision=False)
        model.to_empty(device="cpu")
        torch.manual_seed(0)
        model.init_weights()
        losses["meta"] = []
        for loss in _train(model, shard):
            dist.all_reduce(loss)
            losses["meta"].append(float(loss) / WORLD)
        if rank == 0:
            Path(out).write_text(json.dumps(losses))
        del model
        shutdown()  # the production teardown: free FSDP state, barrier, destroy the group
    finally:
        if dist.is_initialized():  # an error above: leave without waiting for the other rank
            dist.destroy_process_group()


def test_fsdp_two_processes_match_single_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    reference = [float(x) for x in _train(_model(), _batch())]
    out = tmp_path / "losses.json"
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(out)), nprocs=WORLD, join=True)
    sharded = json.loads(out.read_text())
    assert reference[-1] < reference[0]  # the steps did train
    expected = torch.tensor(reference)
    torch.testing.assert_close(torch.tensor(sharded["fp32"]), expected, rtol=1e-4, atol=1e-5)
    # bf16 parameters in compute, fp32 reduction: same curve to bf16 precision.
    torch.testing.assert_close(torch.tensor(sharded["bf16"]), expected, rtol=0, atol=5e-2)
    # Meta-built then initialised per shard: a fresh model (loss ~ ln V) that trains. (DTensor
    # random ops on a CPU mesh draw per shard, so the values differ from the unsharded init.)
    meta = sharded["meta"]
    assert abs(meta[0] - math.log(V)) < 0.1 and meta[-1] < meta[0] - 0.3


def test_model_module_imports_nothing_from_torch_distributed() -> None:
    """In a fresh interpreter, importing model.py (and its attention/moe imports) loads no
    torch.distributed module beyond what ``import torch`` itself loads. The package __init__
    (which imports the trainer) is bypassed so only the model's own imports count."""
    pkg_dir = Path(__file__).resolve().parents[2] / "training_core"
    code = (
        "import sys, types, json, torch\n"
        "before = {m for m in sys.modules if m.startswith('torch.distributed')}\n"
        "pkg = types.ModuleType('training_core'); pkg.__path__ = [sys.argv[1]]\n"
        "sys.modules['training_core'] = pkg\n"
        "import training_core.model\n"
        "after = {m for m in sys.modules if m.startswith('torch.distributed')}\n"
        "print(json.dumps(sorted(after - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(pkg_dir)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
