"""train_run on tiny budgets: learning, init loss, resume equivalence, NaN guard, skip, files."""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from trainer_fixtures import VOCAB, tiny_config, tiny_data

from training_core import RunResult, StopRun, train_run
from training_core.checkpoint import CKPT_DIR

torch.set_num_threads(1)

DESIGN_RESULT_KEYS = set(
    "run_id status failure_reason objective model_name n_params n_params_nonembed "
    "n_params_active flops_per_token unique_tokens epochs seed budget_id steps tokens_seen "
    "total_flops branch_flops final_val_loss best_val_loss final_mc_acc best_mc_acc wall_s "
    "tokens_per_s "
    "started_at finished_at code_version".split()
)


@pytest.fixture
def data(tmp_path: Path):
    return tiny_data(tmp_path)


def test_files_match_design(tmp_path: Path, data) -> None:
    cfg = tiny_config(data, kind="ar", epochs=3.0)
    events: list[dict[str, Any]] = []
    result = train_run(cfg, tmp_path / "run", on_progress=events.append)
    assert result.status == "completed" and result.failure_reason is None
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    evals = pd.read_parquet(tmp_path / "run" / "evals.parquet")
    # 4096 tokens / 32 = 128 windows; 3 epochs of batch 16 -> 24 steps; evals at 0 and each epoch.
    assert result.steps == 24 == len(metrics) == len(events)
    assert metrics["step"].tolist() == list(range(1, 25))
    assert evals["step"].tolist() == [0, 8, 16, 24]
    assert evals["epoch"].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert (evals["val_loss_se"] > 0).all() and (evals["mc_n"] == 6).all()
    assert evals["flops"].iloc[-1] == pytest.approx(result.total_flops)
    assert result.total_flops == pytest.approx(result.flops_per_token * result.tokens_seen)
    assert result.tokens_seen == 3 * 4096
    assert result.best_val_loss == pytest.approx(evals["val_loss"].min())
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert set(stored) == DESIGN_RESULT_KEYS
    assert stored["objective"] == "ar" and stored["n_params_nonembed"] < stored["n_params"]
    assert set(events[0]) == {
        "run_id",
        "step",
        "total_steps",
        "epoch",
        "train_loss",
        "tokens_per_s",
    }


@pytest.mark.parametrize(
    ("kind", "overrides", "val_drop"),
    [
        ("ar", {"epochs": 3.0}, 0.5),
        # The DLM learns the Markov rule more slowly: more, smaller steps at a higher rate.
        ("dlm", {"epochs": 6.0, "optim": {"lr": 1e-2, "batch_size": 8}}, 0.3),
    ],
)
def test_loss_falls(tmp_path: Path, data, kind: str, overrides: dict, val_drop: float) -> None:
    cfg = tiny_config(data, kind=kind, eval={"every_epochs": 2.0}, **overrides)
    result = train_run(cfg, tmp_path / "run")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    evals = pd.read_parquet(tmp_path / "run" / "evals.parquet")
    assert result.status == "completed" and result.objective == kind
    # Same stratified noise at every eval, so successive ELBOs are paired comparisons.
    assert evals["val_loss"].iloc[-1] < evals["val_loss"].iloc[0] - val_drop
    n = len(metrics) // 4
    assert metrics["train_loss"].iloc[-n:].mean() < metrics["train_loss"].iloc[:n].mean()


def test_ar_loss_at_init_is_log_vocab(tmp_path: Path, data) -> None:
    cfg = tiny_config(data, kind="ar", epochs=1 / 8, eval={"every_epochs": None})
    result = train_run(cfg, tmp_path / "run")
    evals = pd.read_parquet(tmp_path / "run" / "evals.parquet")
    first = pd.read_parquet(tmp_path / "run" / "metrics.parquet")["train_loss"].iloc[0]
    assert result.steps == 1
    # Small init (std 0.02) gives near-uniform logits over the VOCAB + 1 embedding rows.
    assert evals["val_loss"].iloc[0] == pytest.approx(math.log(VOCAB + 1), abs=0.05)
    assert first == pytest.approx(math.log(VOCAB + 1), abs=0.05)


def _stop_after(k: int):
    def hook(event: dict[str, Any]) -> None:
        if event["step"] == k:
            raise StopRun(f"stop at {k}")

    return hook


def _frames(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics = pd.read_parquet(run_dir / "metrics.parquet").drop(columns=["tokens_per_s"])
    return metrics, pd.read_parquet(run_dir / "evals.parquet")


@pytest.mark.parametrize(
    ("kind", "stop", "extra"),
    [
        ("dlm", 5, {"optim": {"grad_accum": 2}}),  # stop between evals: resume from step 5 ckpt
        ("ar", 9, {"checkpoint_every_steps": 4}),  # killed after ckpt at 8: steps 9.. redone
    ],
)
def test_resume_matches_uninterrupted(
    tmp_path: Path, data, kind: str, stop: int, extra: dict[str, Any]
) -> None:
    cfg = tiny_config(data, kind=kind, epochs=2.0, **extra)
    full = train_run(cfg, tmp_path / "full")
    part_dir = tmp_path / "part"
    with pytest.raises(StopRun):
        train_run(cfg, part_dir, on_progress=_stop_after(stop))
    assert not (part_dir / "result.json").exists() and (part_dir / CKPT_DIR).is_dir()
    if kind == "ar":
        # Simulate a kill after step 9 without a checkpoint: roll the ckpt back to step 8.
        _rewind_to_earlier_checkpoint(cfg, tmp_path, part_dir, 8)
    resumed = train_run(cfg, part_dir)
    assert resumed.status == "completed" and resumed.steps == full.steps
    for a, b in zip(_frames(tmp_path / "full"), _frames(part_dir), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    assert resumed.final_val_loss == pytest.approx(full.final_val_loss, rel=1e-5)


def _rewind_to_earlier_checkpoint(cfg, tmp_path: Path, part_dir: Path, step: int) -> None:
    """Replace part_dir's checkpoint by one taken at ``step`` (metrics keep later rows)."""
    import shutil

    other = tmp_path / "rewind"
    with pytest.raises(StopRun):
        train_run(cfg, other, on_progress=_stop_after(step))
    shutil.rmtree(part_dir / CKPT_DIR)
    shutil.copytree(other / CKPT_DIR, part_dir / CKPT_DIR)
    assert len(pd.read_parquet(part_dir / "metrics.parquet")) == 9  # rows past the ckpt exist


def test_nonfinite_loss_fails_with_reason(tmp_path: Path, data) -> None:
    cfg = tiny_config(data, kind="ar", optim={"lr": 1e30, "warmup": 0, "grad_clip": None})
    result = train_run(cfg, tmp_path / "run")
    assert result.status == "failed"
    assert "non-finite" in (result.failure_reason or "")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert metrics["train_loss"].map(math.isfinite).all()  # the bad step wrote no row
    assert result.steps == len(metrics) < 16
    stored = RunResult.model_validate_json((tmp_path / "run" / "result.json").read_text())
    assert stored == result


def test_completed_run_is_skipped(tmp_path: Path, data) -> None:
    cfg = tiny_config(data, kind="ar", epochs=0.25)
    first = train_run(cfg, tmp_path / "run")
    mtime = (tmp_path / "run" / "metrics.parquet").stat().st_mtime_ns
    calls: list[dict[str, Any]] = []
    again = train_run(cfg, tmp_path / "run", on_progress=calls.append)
    assert again == first and calls == []
    assert (tmp_path / "run" / "metrics.parquet").stat().st_mtime_ns == mtime


def test_other_errors_are_recorded_and_raised(tmp_path: Path, data) -> None:
    broken = data.model_copy(update={"train_files": (str(tmp_path / "missing.ds"),)})
    cfg = tiny_config(broken, kind="ar")
    with pytest.raises(FileNotFoundError):
        train_run(cfg, tmp_path / "run")
    stored = json.loads((tmp_path / "run" / "result.json").read_text())
    assert stored["status"] == "failed" and "missing.ds" in stored["failure_reason"]


def test_token_count_must_match_the_budget(tmp_path: Path, data) -> None:
    cfg = tiny_config(data.model_copy(update={"unique_tokens": 4000}), kind="ar")
    with pytest.raises(ValueError, match="data.unique_tokens"):
        train_run(cfg, tmp_path / "run")


def test_run_dir_of_another_config_is_refused(tmp_path: Path, data) -> None:
    train_run(tiny_config(data, kind="ar", epochs=0.125), tmp_path / "run")
    with pytest.raises(ValueError, match="run_dir"):
        train_run(tiny_config(data, kind="ar", epochs=0.125, seed=5), tmp_path / "run")


def test_grad_accum_matches_one_big_batch(tmp_path: Path, data) -> None:
    # AR has no objective noise, so splitting a step into micro-batches must not change the math.
    one = tiny_config(data, kind="ar", epochs=1.0)
    four = tiny_config(data, kind="ar", epochs=1.0, optim={"grad_accum": 4})
    train_run(one, tmp_path / "one")
    train_run(four, tmp_path / "four")
    for a, b in zip(_frames(tmp_path / "one"), _frames(tmp_path / "four"), strict=True):
        a, b = a.drop(columns=["run_id"]), b.drop(columns=["run_id"])
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-5)


def test_max_nonfinite_tolerates_then_fails(tmp_path: Path, data) -> None:
    cfg = tiny_config(
        data, kind="ar", max_nonfinite=2, optim={"lr": 1e30, "warmup": 0, "grad_clip": None}
    )
    result = train_run(cfg, tmp_path / "run")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert result.status == "failed" and "non-finite" in (result.failure_reason or "")
    # Two skipped steps are recorded (non-finite, honestly), the third ends the run.
    finite = metrics["train_loss"].map(math.isfinite) & metrics["grad_norm"].map(math.isfinite)
    assert (~finite).sum() == 2 and result.steps == len(metrics)


@pytest.mark.slow
def test_compiled_model_matches_eager(tmp_path: Path, data) -> None:
    eager = train_run(tiny_config(data, kind="dlm", epochs=0.5), tmp_path / "eager")
    compiled = train_run(tiny_config(data, kind="dlm", epochs=0.5, compile=True), tmp_path / "c")
    assert compiled.status == "completed"
    for a, b in zip(_frames(tmp_path / "eager"), _frames(tmp_path / "c"), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-5)
    assert compiled.final_val_loss == pytest.approx(eager.final_val_loss, rel=1e-4)


class _CountingObjective:
    """The real objective, recording the batch of every ``loss`` call the trainer makes."""

    def __init__(self, inner: Any, batches: list[torch.Tensor]) -> None:
        self.inner, self.batches, self.causal = inner, batches, inner.causal

    def loss(self, model: Any, tokens: torch.Tensor, gen: Any, rows: Any = None) -> Any:
        self.batches.append(tokens.detach().cpu().clone())
        return self.inner.loss(model, tokens, gen, rows)


# The trainer's own modules (the loop and what it was split into); evaluation, objectives and the
# model are the objective-specific parts and are not traced.
TRAINER_MODULES = (
    "trainer",
    "run_setup",
    "train_step",
    "eval_points",
    "run_checkpoint",
    "run_records",
)


def _trace_lines(paths: set[str], lines: set[tuple[str, int]]) -> Callable[..., Any]:
    """A sys.settrace function recording the executed (file, line) pairs of the files ``paths``."""

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            lines.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def global_(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename in paths else None

    return global_


def test_one_code_path_trains_both_objectives(
    tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The matched comparison: every AR/DLM difference lives in the objective object. Both runs
    # execute the same lines of the trainer and hand the objective the same batches in the same
    # order; only what the objective does with them (and its causal flag) differs.
    from training_core import run_setup

    paths = {importlib.import_module(f"training_core.{m}").__file__ for m in TRAINER_MODULES}
    real_build = run_setup.build_objective
    seen: dict[str, tuple[list[torch.Tensor], set[tuple[str, int]]]] = {}
    for kind in ("ar", "dlm"):
        batches: list[torch.Tensor] = []
        lines: set[tuple[str, int]] = set()

        def counting(*args: Any, _batches: list = batches, **kwargs: Any) -> _CountingObjective:
            return _CountingObjective(real_build(*args, **kwargs), _batches)

        monkeypatch.setattr(run_setup, "build_objective", counting)
        sys.settrace(_trace_lines(paths, lines))
        try:
            result = train_run(tiny_config(data, kind=kind, epochs=0.5), tmp_path / kind)
        finally:
            sys.settrace(None)
        assert result.status == "completed" and result.objective == kind
        seen[kind] = (batches, lines)
    (ar_batches, ar_lines), (dlm_batches, dlm_lines) = seen["ar"], seen["dlm"]
    assert len(ar_batches) == len(dlm_batches) == result.steps  # one loss call per step
    for a, b in zip(ar_batches, dlm_batches, strict=True):
        assert torch.equal(a, b)
    assert ar_lines == dlm_lines and len(ar_lines) > 100
    assert {path for path, _ in ar_lines} == paths  # every trainer module ran


@pytest.mark.parametrize(
    "damage",
    [
        "metrics-missing",  # lost since the checkpoint: rebuilt from the checkpoint's copy
        "metrics-truncated",
        "evals-truncated",
        "ckpt-model-truncated",  # the checkpoint itself: moved aside, the run starts over
        "ckpt-state-garbled",
    ],
)
def test_resume_after_damaged_files_matches_uninterrupted(
    tmp_path: Path, data, damage: str
) -> None:
    from training_core.checkpoint import EVENTS_FILE

    cfg = tiny_config(data, kind="ar", epochs=2.0, checkpoint_every_steps=4)
    full = train_run(cfg, tmp_path / "full")
    part = tmp_path / "part"
    with pytest.raises(StopRun):
        train_run(cfg, part, on_progress=_stop_after(6))
    name, _, how = damage.partition("-")
    if name == "ckpt":
        file = "model.safetensors" if how.startswith("model") else "state.json"
        target = part / CKPT_DIR / file
    else:
        target = part / f"{name}.parquet"
    if how == "missing":
        target.unlink()
    elif how == "garbled":
        target.write_text("{not json")
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 3])

    resumed = train_run(cfg, part)
    assert resumed.status == "completed" and resumed.steps == full.steps
    for a, b in zip(_frames(tmp_path / "full"), _frames(part), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-6)
    events = (part / EVENTS_FILE).read_text() if (part / EVENTS_FILE).exists() else ""
    assert ("moved to ckpt.bad" in events) == (name == "ckpt")  # the outcome is on record


def test_the_run_applies_its_thread_count(tmp_path: Path, data) -> None:
    # cfg.threads (the grid's: CROSSOVER_TORCH_THREADS, else the run's cpus) reaches torch in
    # the process that trains.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train_run(tiny_config(data, kind="ar", epochs=0.25, threads=2), tmp_path / "run")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
