"""RunConfig: validation errors name the field; run_id is a stable hash of what changes results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from trainer_fixtures import VOCAB, tiny_config, tiny_data

from training_core import ConfigError, RunConfig


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    return tiny_config(tiny_data(tmp_path, mc=False)).model_dump(mode="json")


def _with(cfg: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = {**cfg}
    *parents, leaf = dotted.split(".")
    node = out
    for key in parents:
        node[key] = {**node[key]}
        node = node[key]
    node[leaf] = value
    return out


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("optim.lr", -1.0),
        ("optim.schedule", "linear"),
        ("eval.elbo_samples", 0),
        ("data.token_dtype", "int8"),
        ("epochs", 0),
        ("device", "tpu"),
        ("precision", "fp16"),
        ("objective.kind", "bert"),
        ("model.depth", 0),
    ],
)
def test_errors_name_the_field(base: dict[str, Any], field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        RunConfig.from_dict(_with(base, field, value))


def test_cross_field_errors_name_the_field(base: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"grad_accum"):
        RunConfig.from_dict(_with(_with(base, "optim.batch_size", 6), "optim.grad_accum", 4))
    with pytest.raises(ConfigError, match=r"model\.vocab_size"):
        RunConfig.from_dict(_with(base, "model.vocab_size", VOCAB))  # forgot the mask row
    with pytest.raises(ConfigError, match=r"optim\.warmup"):
        RunConfig.from_dict(_with(base, "optim.warmup", 2.5))


def test_unknown_fields_are_rejected_by_name(base: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"optim\.learning_rate"):
        RunConfig.from_dict(_with(base, "optim.learning_rate", 1e-3))
    with pytest.raises(ConfigError, match=r"fault_injection"):
        RunConfig.from_dict({**base, "fault_injection": True})


def test_run_id_hashes_results_not_speed_knobs(base: dict[str, Any]) -> None:
    cfg = RunConfig.from_dict(base)
    assert len(cfg.run_id) == 16 and int(cfg.run_id, 16) >= 0
    assert RunConfig.from_dict(base).run_id == cfg.run_id
    assert RunConfig.from_dict({**base, "seed": 1}).run_id != cfg.run_id
    assert RunConfig.from_dict(_with(base, "optim.lr", 1e-4)).run_id != cfg.run_id
    assert RunConfig.from_dict({**base, "threads": 2}).run_id == cfg.run_id
    assert RunConfig.from_dict({**base, "checkpoint_every_steps": 3}).run_id == cfg.run_id


def test_frozen_and_yaml_round_trip(base: dict[str, Any], tmp_path: Path) -> None:
    cfg = RunConfig.from_dict(base)
    with pytest.raises(ValueError):
        cfg.seed = 3  # type: ignore[misc]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    again = RunConfig.from_yaml(path)
    assert again == cfg and again.run_id == cfg.run_id
    assert cfg.mask_id == VOCAB


def test_data_config_from_manifest_dict(tmp_path: Path) -> None:
    from training_core import DataConfig

    manifest = {
        "budget_id": "budget_1000",
        "spec_hash": "abc",
        "unique_tokens": 1000,
        "token_dtype": "uint32",
        "vocab_size": 300,
        "train_files": ["/a/0.ds", "/a/1.ds"],
        "val_files": ["/h/val.ds"],
        "eval_mc_path": "/h/eval_mc.parquet",
        "seed": 3,
    }
    data = DataConfig.from_manifest(manifest)
    assert data.train_files == ("/a/0.ds", "/a/1.ds") and data.token_dtype == "uint32"
    assert data.vocab_size == 300 and data.budget_id == "budget_1000"
