"""Checkpoints: safetensors + JSON round trip that continues training bit-for-bit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from training_core.checkpoint import (
    CKPT_DIR,
    EVENTS_FILE,
    checkpoint_step,
    find_checkpoint,
    load_checkpoint,
    read_state,
    save_checkpoint,
    verify_checkpoint,
)
from training_core.model import Transformer, model_preset

torch.set_num_threads(1)


def _model_and_opt(seed: int, tie: bool = False) -> tuple[Transformer, torch.optim.AdamW]:
    torch.manual_seed(seed)
    cfg = model_preset("tiny", vocab_size=17, seq_len=8).model_copy(update={"tie_embeddings": tie})
    model = Transformer(cfg)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _step(model: Transformer, opt: torch.optim.Optimizer, seed: int) -> None:
    idx = torch.randint(0, 17, (2, 8), generator=torch.Generator().manual_seed(seed))
    loss = model(idx, causal=True).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_continues_identically(tmp_path: Path, tie: bool) -> None:
    model, opt = _model_and_opt(0, tie)
    for s in range(3):
        _step(model, opt, s)
    save_checkpoint(tmp_path, model, opt, {"step": 3, "note": "x"})
    # A different init, then restore: must equal the saved model and continue identically.
    other, other_opt = _model_and_opt(1, tie)
    state = load_checkpoint(tmp_path / CKPT_DIR, other, other_opt)
    assert state == {"step": 3, "note": "x"}
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for s in range(3, 5):
        _step(model, opt, s)
        _step(other, other_opt, s)
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if tie:
        assert other.lm_head.weight is other.tok_emb.weight


def test_files_are_safetensors_and_json_only(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    _step(model, opt, 0)
    path = save_checkpoint(tmp_path, model, opt, {"step": 1})
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "model.safetensors",
        "optim.safetensors",
        "state.json",
    ]
    save_checkpoint(tmp_path, model, opt, {"step": 2})  # replaces, leaves no temp dirs
    assert sorted(p.name for p in tmp_path.iterdir()) == [CKPT_DIR]


def test_falls_back_to_previous_after_crash_mid_swap(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    assert find_checkpoint(tmp_path) is None and checkpoint_step(tmp_path) is None
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    # A crash between "ckpt -> ckpt.old" and "ckpt.tmp -> ckpt" leaves only ckpt.old.
    shutil.move(tmp_path / CKPT_DIR, tmp_path / f"{CKPT_DIR}.old")
    found = find_checkpoint(tmp_path)
    assert found is not None and found.name == f"{CKPT_DIR}.old"
    assert checkpoint_step(tmp_path) == 1  # the step a resume would start from
    assert load_checkpoint(found, model, opt) == {"step": 1}


@pytest.mark.parametrize("damage", ["truncate-model", "truncate-optim", "step", "no-state"])
def test_corrupt_checkpoint_is_refused_moved_aside_and_recorded(
    tmp_path: Path, damage: str
) -> None:
    model, opt = _model_and_opt(0)
    path = save_checkpoint(tmp_path, model, opt, {"step": 3})
    assert verify_checkpoint(path) is None
    if damage.startswith("truncate"):
        target = path / ("model.safetensors" if damage.endswith("model") else "optim.safetensors")
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "step":
        (path / "state.json").write_text(json.dumps({"step": 4}))
    else:
        (path / "state.json").unlink()
    assert verify_checkpoint(path) is not None
    assert find_checkpoint(tmp_path) is None  # a reader: reports nothing, moves nothing
    assert path.is_dir()
    assert find_checkpoint(tmp_path, quarantine=True) is None  # the writer: starts over
    assert not path.exists() and (tmp_path / f"{CKPT_DIR}.bad").is_dir()
    (event,) = [json.loads(x) for x in (tmp_path / EVENTS_FILE).read_text().splitlines()]
    assert event["checkpoint"] == CKPT_DIR and event["action"] == f"moved to {CKPT_DIR}.bad"


def test_bad_newest_checkpoint_falls_back_to_a_good_previous_one(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    shutil.copytree(tmp_path / CKPT_DIR, tmp_path / "step1")
    save_checkpoint(tmp_path, model, opt, {"step": 2})
    (tmp_path / "step1").rename(tmp_path / f"{CKPT_DIR}.old")  # as a crash mid-swap leaves it
    (tmp_path / CKPT_DIR / "model.safetensors").write_bytes(b"\x00" * 10)
    found = find_checkpoint(tmp_path, quarantine=True)
    assert found is not None and found.name == f"{CKPT_DIR}.old"
    assert read_state(found) == {"step": 1}


def test_temp_dirs_of_dead_writers_are_removed(tmp_path: Path) -> None:
    model, opt = _model_and_opt(0)
    (tmp_path / f"{CKPT_DIR}.tmp").mkdir()  # the old fixed name
    (tmp_path / f"{CKPT_DIR}.tmp-999999999").mkdir()  # above any pid_max: no such process
    save_checkpoint(tmp_path, model, opt, {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [CKPT_DIR]
