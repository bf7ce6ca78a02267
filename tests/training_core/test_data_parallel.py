"""train_run under torchrun: 2 gloo CPU processes through ``training_core.launch``.

The sharded run must be the single-process run (same batches, same order, same losses and evals
up to float summation order), write one set of files from rank 0, and resume after a kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from crossover_fault_plugin import HOLD_ENV, plugin_env
from trainer_fixtures import tiny_config, tiny_data

from training_core import RunConfig, train_run
from training_core.checkpoint import checkpoint_step
from training_core.data_parallel import Parallel

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
WORLD = 2
# Files a run directory holds when a run completed; nothing per rank.
RUN_FILES = {"ckpt", "config.json", "evals.parquet", "metrics.parquet", "result.json"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _torchrun(cfg: RunConfig, run_dir: Path, config_path: Path) -> list[str]:
    config_path.write_text(cfg.model_dump_json())
    # --standalone: torchrun's rendezvous binds a free port chosen at run time.
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(WORLD),
        "-m",
        "training_core.launch",
        "--config",
        str(config_path),
        "--run-dir",
        str(run_dir),
    ]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc); torchrun starts its ranks in new sessions."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


class _Procs:
    """Started torchrun processes; teardown SIGKILLs each one and its ranks by PID."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []
        self.ranks: set[int] = set()

    def start(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**_env(), **(env or {})}
            )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            self.ranks.update(_descendants(proc.pid))
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
        for pid in self.ranks:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def procs() -> Iterator[_Procs]:
    started = _Procs()
    yield started
    started.stop_all()


def _run_to_end(procs: _Procs, argv: list[str], log: Path) -> None:
    proc = procs.start(argv, log)
    rc = proc.wait(timeout=600)
    assert rc == 0, log.read_text()[-4000:]


def _frames(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = pd.read_parquet(run_dir / "metrics.parquet").drop(columns=["tokens_per_s"])
    return metrics, pd.read_parquet(run_dir / "evals.parquet")


def test_local_rows_split_every_micro_batch_disjointly() -> None:
    micro = torch.arange(7).view(7, 1)  # (B_m, T) = (7, 1)
    shards = [Parallel(r, 3).local_rows(len(micro), 10) for r in range(3)]
    rows = torch.cat([micro[s] for s, _ in shards]).flatten().tolist()
    assert rows == list(range(7))  # disjoint, in order, nothing dropped
    expected = [part.flatten().tolist() for part in torch.tensor_split(micro, 3)]
    assert [micro[s].flatten().tolist() for s, _ in shards] == expected  # tensor_split's cut
    # Rank-averaged gradient = mean over the step's 10 sequences: sum(w_r / world) = 7 / 10.
    assert sum(w for _, w in shards) / 3 == pytest.approx(0.7)
    empty, weight = Parallel(1, 2).local_rows(1, 10)  # one row, two ranks
    assert len(micro[empty]) == 1 and weight == 0.0  # joins the collectives, adds nothing
    assert Parallel().local_rows(7, 10) == (slice(0, 7), pytest.approx(0.7))


# AR in `make test-slow` only: the DLM case runs the same sharding (and the weight-0 rank) and
# must also match the single process's mask noise; each case is one torchrun start-up.
@pytest.mark.parametrize("kind", [pytest.param("ar", marks=pytest.mark.slow), "dlm"])
def test_two_gloo_processes_match_one_process(kind: str, tmp_path: Path, procs: _Procs) -> None:
    """The DLM too: every rank draws the whole batch's masks, so the sharded run sees the very
    noise of the single-process run (not just the same distribution)."""
    data = tiny_data(tmp_path)
    # 131 samples: 8 full steps then one of 3 rows, split [2, 1] by grad_accum, so one rank gets
    # no row of the last micro-batch (the weight-0 path).
    cfg = tiny_config(data, kind=kind, epochs=131 / 128, optim={"grad_accum": 2})
    single = train_run(cfg, tmp_path / "single")
    run_dir = tmp_path / "dist"
    _run_to_end(procs, _torchrun(cfg, run_dir, tmp_path / "cfg.json"), tmp_path / "dist.log")

    dist_result = json.loads((run_dir / "result.json").read_text())
    assert dist_result["status"] == "completed" and dist_result["steps"] == single.steps == 9
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES  # rank 0 alone wrote
    assert dist_result["final_val_loss"] == pytest.approx(single.final_val_loss, rel=1e-4)
    assert dist_result["final_mc_acc"] == single.final_mc_acc
    for a, b in zip(_frames(tmp_path / "single"), _frames(run_dir), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # `make test-slow`: kept out of the default run for its time
def test_killed_distributed_run_resumes_to_the_same_end(tmp_path: Path, procs: _Procs) -> None:
    data = tiny_data(tmp_path)
    model = {"tie_embeddings": True}  # the tied-name path of the gathered checkpoint
    # 24 steps (3 epochs of 8), evaluated at 8, 16 and 24: killed at 5, every eval after resume.
    cfg = tiny_config(
        data, kind="ar", epochs=3.0, eval={"every_epochs": 1.0}, checkpoint_every_steps=5
    )
    cfg = RunConfig.from_dict({**cfg.model_dump(), "model": {**cfg.model.model_dump(), **model}})
    single = train_run(cfg, tmp_path / "single")
    run_dir = tmp_path / "dist"
    argv = _torchrun(cfg, run_dir, tmp_path / "cfg.json")
    log = tmp_path / "dist.log"
    # The first attempt holds after its checkpoint of step 5: the kill lands mid-run, always.
    first = procs.start(argv, log, plugin_env(_env(), {HOLD_ENV: "5"}))
    deadline = time.monotonic() + 600
    while (checkpoint_step(run_dir) or -1) < 5:
        assert first.poll() is None, f"run ended before the kill: {log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"run never checkpointed: {log.read_text()[-4000:]}"
        time.sleep(0.1)
    time.sleep(1.0)  # were the hold broken, the run would checkpoint step 10 meanwhile
    assert checkpoint_step(run_dir) == 5  # it holds: nothing trains past the checkpoint
    ranks = _descendants(first.pid)
    procs.ranks.update(ranks)
    first.kill()  # torchrun dies; its ranks (new sessions) follow via launch's owner watch
    first.wait(timeout=60)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in ranks):
        assert time.monotonic() < deadline, "ranks outlived their torchrun"
        time.sleep(0.2)
    assert not (run_dir / "result.json").exists()
    assert checkpoint_step(run_dir) == 5 < single.steps
    steps = pd.read_parquet(run_dir / "metrics.parquet")["step"].tolist()
    assert steps == list(range(1, 6))  # rows up to the checkpoint, flushed before it

    _run_to_end(procs, argv, log)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["steps"] == single.steps
    steps = pd.read_parquet(run_dir / "metrics.parquet")["step"].tolist()
    assert steps == list(range(1, single.steps + 1))  # every step exactly once
    assert result["final_val_loss"] == pytest.approx(single.final_val_loss, rel=1e-4)
    for a, b in zip(_frames(tmp_path / "single"), _frames(run_dir), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-5)


def test_two_gloo_processes_branch_like_one_process(tmp_path: Path, procs: _Procs) -> None:
    """Evaluation branches under FSDP2: every rank snapshots its shards, takes the same cooldown
    steps and restores; the branch rows and the main run match the single process."""
    data = tiny_data(tmp_path)
    branched = {"every_epochs": 1.0, "branches": True}
    cfg = tiny_config(
        data, kind="dlm", epochs=3.0, optim={"schedule": "wsd"}, eval=branched
    )  # 24 steps: branches forked at 8 and 16 (cooldowns of 2 and 3 steps)
    single = train_run(cfg, tmp_path / "single")
    run_dir = tmp_path / "dist"
    _run_to_end(procs, _torchrun(cfg, run_dir, tmp_path / "cfg.json"), tmp_path / "dist.log")
    kinds = pd.read_parquet(run_dir / "evals.parquet")["kind"].tolist()
    assert kinds == ["mid-run", "branch", "branch", "final"]
    dist_result = json.loads((run_dir / "result.json").read_text())
    assert dist_result["branch_flops"] == pytest.approx(single.branch_flops)
    for a, b in zip(_frames(tmp_path / "single"), _frames(run_dir), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-5)
