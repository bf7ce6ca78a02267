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


def _fixed_config(**changes: Any) -> RunConfig:
    """A config with no temp paths in it, so its id is the same on every machine."""
    from training_core import DataConfig
    from training_core.model import ModelConfig
    from training_core.objectives import ObjectiveConfig

    shape = {"depth": 2, "d_model": 32, "n_heads": 2, "ffn_hidden": 64}
    return RunConfig(
        model=ModelConfig(name="t", vocab_size=301, seq_len=32, **shape),
        objective=ObjectiveConfig(kind="dlm"),
        data=DataConfig(train_files=("/b/train.ds",), vocab_size=300, unique_tokens=1000),
        epochs=2.0,
        **changes,
    )


def test_run_id_is_pinned() -> None:
    """The hash rule itself (canonical JSON of the non-default fields): a changed digest here
    means every finished run on disk would be trained again."""
    assert _fixed_config().run_id == "758b544285acc4e7"
    assert _fixed_config(seed=0, threads=4, compile=True).run_id == "758b544285acc4e7"
    assert _fixed_config(seed=1).run_id != "758b544285acc4e7"


# The defaults run ids leave out. Changing one would give runs trained under the old value the
# id of the new one (a finished run silently reused for a different config): add a field, or a
# new option value, instead of changing a default.
HASHED_DEFAULTS = {
    "model.rope_theta": 10000.0,
    "model.norm_eps": 1e-05,
    "model.tie_embeddings": False,
    "model.moe": None,
    "model.moe.aux_loss_coef": 0.01,
    "objective.dlm_variant": "smdm",
    "objective.eps": 0.001,
    "objective.antithetic": True,
    "objective.ar_input_noise": 0.0,
    "objective.ar_noise_kind": "mask",
    "optim.lr": 0.001,
    "optim.min_lr_ratio": 0.1,
    "optim.warmup": 0.05,
    "optim.schedule": "cosine",
    "optim.decay_frac": 0.2,
    "optim.weight_decay": 0.1,
    "optim.betas": [0.9, 0.95],
    "optim.eps": 1e-08,
    "optim.grad_clip": 1.0,
    "optim.batch_size": 32,
    "optim.grad_accum": 1,
    "eval.every_epochs": 1.0,
    "eval.every_steps": None,
    "eval.at_epochs": [],
    "eval.at_start": True,
    "eval.val_max_tokens": 1048576,
    "eval.val_batch_size": 32,
    "eval.elbo_samples": 32,
    "eval.mc_samples": 128,
    "eval.mc_max_items": None,
    "eval.branches": False,
    "eval.cooldown_fraction": 0.2,
    "eval.decay": "linear",
    "data.val_files": [],
    "data.eval_mc_path": None,
    "data.token_dtype": "uint16",
    "data.budget_id": "",
    "seed": 0,
    "device": "auto",
    "precision": "fp32",
    "max_nonfinite": 0,
}


def test_hashed_defaults_are_pinned() -> None:
    from formats.hashing import hashed_defaults
    from training_core.config import _NOT_HASHED

    now = {k: v for k, v in hashed_defaults(RunConfig).items() if k not in _NOT_HASHED}
    assert now == HASHED_DEFAULTS


def test_a_field_added_at_its_default_keeps_the_run_id() -> None:
    class LaterRunConfig(RunConfig):
        label_smoothing: float = 0.0  # a later release's field, its default the old behaviour

    for cfg in (_fixed_config(), _fixed_config(seed=3, max_nonfinite=2)):
        later = LaterRunConfig(**dict(cfg))
        assert later.run_id == cfg.run_id
        assert later.model_copy(update={"label_smoothing": 0.1}).run_id != cfg.run_id


def test_a_value_given_equal_to_its_default_keeps_the_run_id() -> None:
    from training_core.config import EvalConfig, OptimConfig

    given = _fixed_config(optim=OptimConfig(lr=1e-3), eval=EvalConfig(at_start=True), seed=0)
    assert given.run_id == _fixed_config().run_id
    for changed in ({"optim": OptimConfig(lr=2e-3)}, {"eval": EvalConfig(at_start=False)}):
        assert _fixed_config(**changed).run_id != _fixed_config().run_id
