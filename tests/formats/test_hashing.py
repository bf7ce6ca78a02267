"""Config hashes: canonical JSON, defaults left out, so a field added later keeps old ids."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from formats.hashing import canonical_json, config_hash, hashed_defaults, sha256_hex


class Inner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    inner: Inner = Inner()
    epochs: float = Field(default=1.0, gt=0)
    threads: int | None = None


class ConfigLater(Config):
    """The same config after a release added a field whose default keeps the old behaviour."""

    label_smoothing: float = 0.0


def test_canonical_json_sorts_keys_and_drops_spaces() -> None:
    assert canonical_json({"b": [1, 2], "a": {"d": 1, "c": None}}) == (
        '{"a":{"c":null,"d":1},"b":[1,2]}'
    )
    # sha256 of exactly those bytes (echo -n '{"a":1}' | sha256sum)
    assert sha256_hex({"a": 1}) == (
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )


def test_fields_at_their_defaults_are_left_out_at_any_depth() -> None:
    cfg = Config(name="x")
    assert config_hash(cfg) == sha256_hex({"name": "x"})[:16]
    changed = Config(name="x", inner=Inner(lr=2e-3))
    assert config_hash(changed) == sha256_hex({"inner": {"lr": 0.002}, "name": "x"})[:16]


def test_a_field_added_at_its_default_keeps_the_id() -> None:
    for cfg in (Config(name="x"), Config(name="x", epochs=3.0, inner=Inner(lr=2e-3))):
        later = ConfigLater(**cfg.model_dump())
        assert config_hash(later) == config_hash(cfg)
        assert config_hash(later.model_copy(update={"label_smoothing": 0.1})) != config_hash(cfg)


def test_a_value_equal_to_the_default_hashes_like_the_default() -> None:
    """Given or not, a default-valued field is left out on both sides: one id per config."""
    assert config_hash(Config(name="x", epochs=1.0)) == config_hash(Config(name="x"))
    assert config_hash(Config(name="x", inner=Inner(lr=1e-3))) == config_hash(Config(name="x"))
    assert config_hash(Config(name="x", epochs=2.0)) != config_hash(Config(name="x"))
    # None is a default like any other: a non-default value is always told apart.
    assert config_hash(Config(name="x", threads=4)) != config_hash(Config(name="x"))


def test_exclude_leaves_out_named_fields_whatever_their_value() -> None:
    assert config_hash(Config(name="x", threads=8), exclude={"threads"}) == config_hash(
        Config(name="x")
    )


def test_hashed_defaults_lists_every_default_by_path() -> None:
    assert hashed_defaults(Config) == {
        "inner.lr": 1e-3,
        "inner.betas": [0.9, 0.95],
        "epochs": 1.0,
        "threads": None,
    }
