"""StudySpec validation: every shipped preset loads; bad specs fail with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.spec import PRESETS_DIR, StudySpecError, load_preset, load_spec, parse_spec

BASE = {
    "name": "t",
    "budgets": {"sizes": [1000, 2000]},
    "models": ["tiny"],
    "epochs": [1, 2],
}


def _with(**changes: object) -> dict:
    data = {k: v for k, v in BASE.items() if k not in changes}
    data.update({k: v for k, v in changes.items() if v is not None})
    return data


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_preset_loads(name: str) -> None:
    spec = load_preset(name)
    assert spec.name == name
    assert {o.kind for o in spec.objectives} == {"ar", "dlm"}


def test_expected_presets_ship() -> None:
    names = {p.stem for p in PRESETS_DIR.glob("*.yaml")}
    assert {"smoke", "demo", "paper-reduced", "paper-full"} <= names


def test_shorthand_and_options_for_objectives() -> None:
    spec = parse_spec(_with(objectives=["ar", {"kind": "dlm", "dlm_variant": "seed"}]))
    assert [o.kind for o in spec.objectives] == ["ar", "dlm"]
    assert spec.objectives[1].dlm_variant == "seed"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": ["tiny", "xxl"]}, "models[1]: unknown preset 'xxl'"),
        ({"epochs": [1, -2]}, "epochs[1]: must be > 0"),
        ({"epochs": None, "total_tokens": 10_000}, None),
        ({"total_tokens": 10_000}, "give exactly one epoch design"),
        ({"epochs": None}, "give exactly one epoch design, got none"),
        ({"epochs": None, "compute_flops": {"xs": 1e12}}, "compute_flops.xs: not one of models"),
        ({"objectives": ["ar", "gpt"]}, "objectives[1].kind"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"budgets": {"sizes": [1000], "bogus": 1}}, "budgets.bogus"),
        ({"surprise": True}, "surprise: Extra inputs are not permitted"),
        ({"resources": {"per_model": {"m": {"gpus": 1}}}}, "resources.per_model.m"),
        ({"name": "has space"}, "name:"),
        ({"eval": {"branches": True}}, "eval.branches: cooldown branches fork a stable"),
        ({"eval": {"branches": True, "decay": "cosine"}}, "eval.decay"),
        ({"eval": {"branches": True, "cooldown_fraction": 0}}, "eval.cooldown_fraction"),
    ],
)
def test_errors_name_the_field(changes: dict, message: str | None) -> None:
    if message is None:
        assert parse_spec(_with(**changes)).total_tokens == 10_000
        return
    with pytest.raises(StudySpecError) as err:
        parse_spec(_with(**changes))
    assert message in str(err.value)


def test_load_spec_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_with(models=["xxl"])))
    with pytest.raises(StudySpecError, match=r"study\.yaml:\nmodels\[0\]: unknown preset 'xxl'"):
        load_spec(path)


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(StudySpecError, match="choose from .*'demo'"):
        load_preset("nope")


def test_spec_is_frozen() -> None:
    spec = parse_spec(BASE)
    with pytest.raises(ValueError):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", [".", "..", "....", ".hidden", "budgets", "Budgets", "a/b", ""])
def test_study_names_that_would_leave_the_home_are_refused(name: str) -> None:
    with pytest.raises(StudySpecError, match="name"):
        parse_spec(_with(name=name))


def test_study_paths_stay_inside_the_home(tmp_path: Path) -> None:
    from flows.flows import StudyPaths

    home = tmp_path / "home"
    home.mkdir()
    paths = StudyPaths.of(parse_spec(_with(name="v1.2_ok-name")), home)
    assert paths.study_dir == home.resolve() / "v1.2_ok-name"
    assert paths.db_path.parent == paths.study_dir
    # A symlink planted in the home must not carry the study's writes elsewhere.
    (home / "escape").symlink_to(tmp_path)
    with pytest.raises(StudySpecError, match="outside"):
        StudyPaths.of(parse_spec(_with(name="escape")), home)


def test_spec_hash_changes_with_the_grid_not_the_description() -> None:
    from flows.spec import spec_hash

    base = parse_spec(_with())
    assert spec_hash(base) == spec_hash(parse_spec(_with(description="words")))
    assert spec_hash(base) != spec_hash(parse_spec(_with(optim={"lr": 2e-3})))


def test_spec_hash_keeps_its_value_when_a_field_is_added_at_its_default() -> None:
    from flows.spec import StudySpec, spec_hash

    class LaterSpec(StudySpec):
        warmup_budget: int = 0  # a later release's field, its default the old behaviour

    base = parse_spec(_with())
    later = LaterSpec.model_validate(_with())
    assert spec_hash(later) == spec_hash(base)
    assert spec_hash(later.model_copy(update={"warmup_budget": 5})) != spec_hash(base)
    # Given explicitly at its default, a field hashes as if it were left out.
    assert spec_hash(parse_spec(_with(max_retries=2))) == spec_hash(base)
