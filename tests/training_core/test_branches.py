"""Evaluation branches: the plan, the in-memory fork, and that a branch IS a WSD run of its length.

The science check (branch vs a separately trained cosine run vs the mid-run point) is in
test_branches_science.py; the kill inside a branch is at the end of this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from crossover_fault_plugin import HOLD_BRANCH_ENV, plugin_env
from trainer_fixtures import tiny_config, tiny_data

from training_core import ConfigError, StopRun, train_run
from training_core.branches import BranchPlan, plan_branch, restore_snapshot, take_snapshot
from training_core.checkpoint import checkpoint_step
from training_core.config import EvalConfig, OptimConfig

torch.set_num_threads(1)

# 128 windows, batch 16: 8 steps an epoch; 4 epochs = 32 steps; WSD decay over the last
# round(0.2 * 32) = 6 steps (from step 26). Forks after each epoch: steps 8, 16, 24 with
# cooldowns round(0.2 * s) = 2, 3, 5 steps, ending at steps 10, 19, 29.
WSD = {"schedule": "wsd", "warmup": 2, "decay_frac": 0.2}
BRANCHED = {"every_epochs": 1.0, "branches": True, "cooldown_fraction": 0.2}


@pytest.fixture
def data(tmp_path: Path):
    return tiny_data(tmp_path)


def test_plan_skips_the_start_the_final_decay_and_the_end() -> None:
    optim, evals = OptimConfig(**WSD), EvalConfig(**BRANCHED)
    assert plan_branch(8, 32, optim, evals) == BranchPlan(8, 2)
    assert plan_branch(24, 32, optim, evals) == BranchPlan(24, 5)
    assert plan_branch(1, 32, optim, evals) == BranchPlan(1, 1)  # at least one cooldown step
    assert plan_branch(0, 32, optim, evals) is None  # the initial model
    assert plan_branch(26, 32, optim, evals) is None  # the main run is already decaying
    late = OptimConfig(**{**WSD, "decay_frac": 0.1})  # decays from step 36 of 40
    assert plan_branch(34, 40, late, evals) is None  # a cooldown of 7 steps would end at 41
    assert plan_branch(8, 32, optim, EvalConfig()) is None  # branches off


def test_branches_need_a_stable_phase(data) -> None:
    with pytest.raises(ConfigError, match="eval.branches"):
        tiny_config(data, eval=BRANCHED)  # the default schedule is cosine


def test_snapshot_restores_model_optimizer_and_rng() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    before = [p.clone() for p in model.parameters()]
    moments = [s["exp_avg"].clone() for s in opt.state.values()]
    snap = take_snapshot(model, opt)
    draw = torch.rand(3)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    restore_snapshot(snap, model, opt)
    for p, q in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for s, m in zip(opt.state.values(), moments, strict=True):
        torch.testing.assert_close(s["exp_avg"], m, rtol=0, atol=0)
        assert int(s["step"]) == 1
    torch.testing.assert_close(torch.rand(3), draw)  # the RNG stream is rewound too


def _evals(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "evals.parquet")


@pytest.mark.parametrize("kind", ["ar", "dlm"])
def test_a_branch_is_a_wsd_run_of_its_length(tmp_path: Path, data, kind: str) -> None:
    branched = tiny_config(data, kind=kind, epochs=4.0, optim=WSD, eval=BRANCHED)
    result = train_run(branched, tmp_path / "branched")
    rows = _evals(tmp_path / "branched")
    assert rows["kind"].tolist() == ["mid-run", "branch", "branch", "branch", "final"]
    assert rows["step"].tolist() == [0, 10, 19, 29, 32]
    branch = rows[rows["kind"] == "branch"]
    assert branch["fork_step"].tolist() == [8, 16, 24]
    assert branch["epoch"].tolist() == pytest.approx([10 / 8, 19 / 8, 29 / 8])
    assert branch["tokens_seen"].tolist() == [s * 16 * 32 for s in (10, 19, 29)]
    # flops: the evaluated model's own training; run_flops: all spent so far, branches included.
    fpt_tokens = result.flops_per_token * 16 * 32
    assert branch["flops"].tolist() == pytest.approx([s * fpt_tokens for s in (10, 19, 29)])
    assert branch["run_flops"].tolist() == pytest.approx(
        [s * fpt_tokens for s in (8 + 2, 16 + 5, 24 + 10)]
    )
    assert result.branch_flops == pytest.approx(10 * fpt_tokens)
    assert rows["run_flops"].iloc[-1] == pytest.approx(result.total_flops + result.branch_flops)

    # The branch forked at 16 is a WSD run of 19 steps decaying over its last 3.
    alone = tiny_config(data, kind=kind, epochs=19 * 16 / 128, optim={**WSD, "decay_frac": 3 / 19})
    alone_result = train_run(alone, tmp_path / "alone")
    assert alone_result.steps == 19
    assert branch["val_loss"].iloc[1] == pytest.approx(alone_result.final_val_loss, rel=1e-5)
    assert branch["mc_acc"].iloc[1] == alone_result.final_mc_acc
    # And the main run went on untouched: its end is the unbranched WSD run's.
    plain = train_run(tiny_config(data, kind=kind, epochs=4.0, optim=WSD), tmp_path / "plain")
    assert result.final_val_loss == pytest.approx(plain.final_val_loss, rel=1e-6)
    main = pd.read_parquet(tmp_path / "branched" / "metrics.parquet")
    other = pd.read_parquet(tmp_path / "plain" / "metrics.parquet")
    pd.testing.assert_series_equal(main["train_loss"], other["train_loss"], rtol=1e-6)


def test_stop_right_after_a_branch_keeps_it_and_its_compute(tmp_path: Path, data) -> None:
    # Stopped at step 16 once its branch is evaluated: the checkpoint is the pre-branch one, the
    # branch row is on disk; the resumed run must neither redo nor forget the branch.
    cfg = tiny_config(data, kind="ar", epochs=4.0, optim=WSD, eval=BRANCHED)
    full = train_run(cfg, tmp_path / "full")

    def stop_at_16(event: dict) -> None:
        if event["step"] == 16:
            raise StopRun("stop")

    with pytest.raises(StopRun):
        train_run(cfg, tmp_path / "part", on_progress=stop_at_16)
    assert checkpoint_step(tmp_path / "part") == 16
    assert _evals(tmp_path / "part")["kind"].tolist() == ["mid-run", "branch", "branch"]
    resumed = train_run(cfg, tmp_path / "part")
    assert resumed.branch_flops == pytest.approx(full.branch_flops)
    pd.testing.assert_frame_equal(
        _evals(tmp_path / "full"), _evals(tmp_path / "part"), check_exact=False, rtol=1e-5
    )


def _child(cfg_json: Path, run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    code = (
        "import sys; from training_core import RunConfig, train_run; "
        "train_run(RunConfig.model_validate_json(open(sys.argv[1]).read()), sys.argv[2])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(cfg_json), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=plugin_env({**os.environ, "OMP_NUM_THREADS": "1"}, env),  # the hold plugin
    )


def test_kill_inside_a_branch_resumes_exactly(tmp_path: Path, data) -> None:
    # The DLM (its masks are drawn per step: the redone branch must draw the same ones); the
    # path is objective-agnostic and the AR side of resume is test_stop_right_after_a_branch.
    cfg = tiny_config(data, kind="dlm", epochs=4.0, optim=WSD, eval=BRANCHED)
    full = train_run(cfg, tmp_path / "full")
    cfg_json, run_dir = tmp_path / "cfg.json", tmp_path / "killed"
    cfg_json.write_text(cfg.model_dump_json())
    # Holds halfway through the cooldown of the branch forked at step 16 (3 steps: after 1).
    proc = _child(cfg_json, run_dir, {HOLD_BRANCH_ENV: "16"})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 600
        for line in proc.stdout:  # the hold announces itself; the run then waits for its kill
            if line.startswith(HOLD_BRANCH_ENV):
                break
            assert time.monotonic() < deadline, "the run never reached the branch"
        else:
            pytest.fail(f"run ended without holding (rc {proc.wait()})")
        proc.kill()  # SIGKILL: nothing of the branch state reaches the disk
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert checkpoint_step(run_dir) == 16  # the pre-branch checkpoint
    before = _evals(run_dir)
    assert before["kind"].tolist() == ["mid-run", "branch"]  # the branch at 16 never finished
    resumed = train_run(cfg, run_dir)
    assert resumed.status == "completed" and resumed.branch_flops == full.branch_flops
    pd.testing.assert_frame_equal(
        _evals(tmp_path / "full"), _evals(run_dir), check_exact=False, rtol=1e-5, atol=1e-6
    )
    assert pd.read_parquet(run_dir / "metrics.parquet")["step"].tolist() == list(range(1, 33))
