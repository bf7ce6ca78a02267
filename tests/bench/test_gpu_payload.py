"""bench/gpu_payload.py: data paths move between homes without changing anything else, and a
device run whose relocated config is not one the study prepared is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from device_sim import REPO
from trainer_fixtures import tiny_config, tiny_data

from training_core.config import RunConfig

sys.path.insert(0, str(REPO / "bench"))
from gpu_payload import RUNS_FILE, ingest, pack_runs, relocate  # noqa: E402


def _config(home: Path) -> RunConfig:
    home.mkdir(parents=True)
    return tiny_config(tiny_data(home))


def test_relocate_round_trips_the_run_id_and_moves_only_data_paths(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "cpu")
    raw = cfg.model_dump(mode="json")
    moved = relocate(raw, str(tmp_path / "cpu"), "/elsewhere/home")
    assert all(p.startswith("/elsewhere/home/") for p in moved["data"]["train_files"])
    assert moved["data"]["eval_mc_path"].startswith("/elsewhere/home/")
    assert {k: v for k, v in moved.items() if k != "data"} == {
        k: v for k, v in raw.items() if k != "data"
    }
    back = relocate(moved, "/elsewhere/home", str(tmp_path / "cpu"))
    assert RunConfig.model_validate(back).run_id == cfg.run_id


def test_relocate_names_the_field_of_a_path_outside_the_home(tmp_path: Path) -> None:
    raw = _config(tmp_path / "cpu").model_dump(mode="json")
    with pytest.raises(ValueError, match=r"data\.train_files: .* not under the payload home"):
        relocate(raw, "/some/other/home", "/x")


def test_ingest_refuses_a_run_the_study_did_not_prepare(tmp_path: Path) -> None:
    home = tmp_path / "cpu"
    cfg = _config(home)
    payload = tmp_path / "payload"
    payload.mkdir()
    prepared = {"study": "s", "home": str(home), "runs": [{"run_id": "0" * 16, "config": {}}]}
    (payload / RUNS_FILE).write_text(json.dumps(prepared))
    run_dir = tmp_path / "device" / cfg.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json())
    tar = tmp_path / "runs.tar.gz"
    assert pack_runs([run_dir], str(home), "s", tar) == 1
    with pytest.raises(ValueError, match=f"{cfg.run_id}.*not in runs.json"):
        ingest(tar, payload)
    assert not (home / "s").exists()  # nothing half-ingested
