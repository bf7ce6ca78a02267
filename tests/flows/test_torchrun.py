"""A multi-GPU run's torchrun, without GPUs: the command (checked by torchrun's and the
launcher's own parsers), and real 2-process gloo runs on the CPU: success, progress, failure
text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from crossover_fault_plugin import RAISE_ON_RANK_ENV, plugin_pythonpath
from torch.distributed.run import get_args_parser
from trainer_fixtures import tiny_config, tiny_data  # tests/training_core, on sys.path (conftest)

from flows.torchrun import TORCHRUN_LOG, torchrun_command, train_torchrun
from training_core.launch import build_parser


def test_torchrun_command_for_four_gpus() -> None:
    argv = torchrun_command(Path("/runs/cfg.json"), Path("/runs/abc"), 4)
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]  # torchrun, this venv
    args = get_args_parser().parse_args(argv[3:])
    assert args.standalone and args.nproc_per_node == "4" and args.module
    assert args.training_script == "training_core.launch"
    launch = build_parser().parse_args(args.training_script_args)
    assert launch.config == Path("/runs/cfg.json") and launch.run_dir == Path("/runs/abc")


def _tiny_run(tmp_path: Path, **update):
    cfg = tiny_config(tiny_data(tmp_path), kind="ar", epochs=0.5)
    return cfg.model_copy(update=update) if update else cfg


def test_two_process_run_completes_with_progress(tmp_path: Path) -> None:
    cfg = _tiny_run(tmp_path)
    seen: list[dict] = []
    result = train_torchrun(cfg, tmp_path / "run", 2, 1, seen.append)
    assert result["status"] == "completed" and result["steps"] == 4
    assert (tmp_path / "run" / TORCHRUN_LOG).exists()
    assert seen[-1]["run_id"] == cfg.run_id and seen[-1]["step"] == 4  # from metrics.parquet
    assert seen[-1]["tokens_per_s"] > 0


def test_failure_without_result_records_the_log_tail(tmp_path: Path) -> None:
    # model_copy skips validation: the launcher rejects this config before train_run starts,
    # so no rank writes a result.json and the failure text must come from the ranks' error file.
    cfg = _tiny_run(tmp_path, epochs=-1.0)
    result = train_torchrun(cfg, tmp_path / "run", 2, 1, lambda info: None)
    assert result["status"] == "failed"
    assert "torchrun exited with status 1" in result["failure_reason"]
    assert "ValidationError" in result["failure_reason"] and "epochs" in result["failure_reason"]
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["failure_reason"] == result["failure_reason"]


def test_a_rank_that_raises_gives_the_run_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rank 1 raises after its first checkpoint (the test fault plugin): rank 0 alone writes
    # result.json and never gets there, so the reason is rank 1's, from torch elastic's error file.
    cfg = _tiny_run(tmp_path, checkpoint_every_steps=1)
    monkeypatch.setenv("PYTHONPATH", plugin_pythonpath())  # the ranks inherit it
    monkeypatch.setenv(RAISE_ON_RANK_ENV, "1")
    result = train_torchrun(cfg, tmp_path / "run", 2, 1, lambda info: None)
    assert result["status"] == "failed"
    reason = result["failure_reason"]
    assert reason.startswith("torchrun exited with status 1: RuntimeError: planted failure")
    assert "on rank 1 after the checkpoint of 1" in reason
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["failure_reason"] == reason
