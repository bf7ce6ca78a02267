"""`StudySpec`: a whole study described once, in YAML, validated at the edge.

A study is the grid {objective x model x unique-token budget x epochs x seed}. Epochs come from
exactly one of three designs:

- ``epochs``: the same list of epoch counts for every budget;
- ``total_tokens``: one training-token budget split across unique budgets, epochs = total / unique
  (the seed paper: 96B tokens as 0.5B x 192, 1B x 96, 1.5B x 64, 10B x 9.6, 96B x 1);
- ``compute_flops``: a FLOPs budget per model size, epochs = C / (flops_per_token x unique).

Training hyperparameters (``optim``, ``eval``) are one set shared by both objectives: a matched
comparison is the point of the study, so there is no per-objective override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from formats.errors import describe_validation_error
from formats.hashing import config_hash
from pipeline.spec import BudgetSpec
from training_core.config import EvalConfig, OptimConfig
from training_core.model import list_presets
from training_core.objectives import ObjectiveConfig

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
_FROZEN = ConfigDict(frozen=True, extra="forbid")
# A study is the folder CROSSOVER_HOME/<name>: one path component that is no dot-only name
# ("." / ".." would write the DuckDB and report above the home) and not the budgets folder.
STUDY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
RESERVED_NAMES = ("budgets",)


class StudySpecError(ValueError):
    """A spec that failed validation; one ``field.path: problem`` line per error."""


class Resources(BaseModel):
    """What one run asks Ray for. ``gpus > 1`` runs through a placement group on one node."""

    model_config = _FROZEN

    cpus: float = Field(default=1.0, gt=0, description="CPUs per run (also torch threads on CPU).")
    gpus: float = Field(default=0.0, ge=0, description="GPUs per run; fractions share a GPU.")


class ResourceSpec(BaseModel):
    """Resources per run, by model size: ``per_model`` overrides ``default`` for a preset."""

    model_config = _FROZEN

    default: Resources = Resources()
    per_model: dict[str, Resources] = Field(default_factory=dict)

    def for_model(self, name: str) -> Resources:
        return self.per_model.get(name, self.default)


class StudySpec(BaseModel):
    """Everything that defines a study; ``load_spec`` reads one from YAML."""

    model_config = _FROZEN

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=STUDY_NAME_PATTERN,
        description="Folder name under the home: a letter or digit first, then letters, digits,"
        " '_', '.', '-' (so never '.', '..' or a hidden folder); not " + "/".join(RESERVED_NAMES),
    )
    description: str = ""
    budgets: BudgetSpec
    models: tuple[str, ...] = Field(min_length=1, description="Model preset names.")
    seq_len: int = Field(default=128, ge=8, description="Training context length (tokens).")
    objectives: tuple[ObjectiveConfig, ...] = Field(
        default=(ObjectiveConfig(kind="ar"), ObjectiveConfig(kind="dlm")),
        min_length=1,
        description="'ar'/'dlm' or a mapping with the objective's options.",
    )
    epochs: tuple[float, ...] | None = Field(default=None, description="Epoch counts per budget.")
    total_tokens: int | None = Field(
        default=None, gt=0, description="Training tokens per run; epochs = total / unique."
    )
    compute_flops: dict[str, float] | None = Field(
        default=None, description="Training FLOPs per run, by model preset."
    )
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    resources: ResourceSpec = ResourceSpec()
    max_retries: int = Field(
        default=2, ge=0, le=20, description="Ray resubmissions of a run whose worker died."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED_NAMES:
            raise ValueError(f"name: {name!r} is reserved (a folder of the home); choose another")
        return name

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"kind": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        known = list_presets()
        for i, name in enumerate(models):
            if name not in known:
                raise ValueError(f"models[{i}]: unknown preset {name!r}; choose from {known}")
        if len(set(models)) != len(models):
            raise ValueError(f"models: duplicates in {list(models)}")
        return models

    @field_validator("epochs")
    @classmethod
    def _positive_epochs(cls, epochs: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if epochs is not None:
            if not epochs:
                raise ValueError("epochs: give at least one epoch count")
            for i, e in enumerate(epochs):
                if e <= 0:
                    raise ValueError(f"epochs[{i}]: must be > 0, got {e}")
        return epochs

    @model_validator(mode="after")
    def _one_epoch_design(self) -> StudySpec:
        given = [k for k in ("epochs", "total_tokens", "compute_flops") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "epochs/total_tokens/compute_flops: give exactly one epoch design, got "
                f"{given or 'none'}"
            )
        if self.compute_flops is not None:
            for name, flops in self.compute_flops.items():
                if name not in self.models:
                    raise ValueError(f"compute_flops.{name}: not one of models {list(self.models)}")
                if flops <= 0:
                    raise ValueError(f"compute_flops.{name}: must be > 0, got {flops}")
            missing = [m for m in self.models if m not in self.compute_flops]
            if missing:
                raise ValueError(f"compute_flops: missing a budget for models {missing}")
        for name in self.resources.per_model:
            if name not in self.models:
                raise ValueError(
                    f"resources.per_model.{name}: not one of models {list(self.models)}"
                )
        if self.eval.branches and self.optim.schedule != "wsd":
            raise ValueError(
                "eval.branches: cooldown branches fork a stable learning rate; set "
                f"optim.schedule to 'wsd' (got {self.optim.schedule!r})"
            )
        kinds = [o.kind for o in self.objectives]
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives: duplicates in {kinds}")
        return self


def spec_hash(spec: StudySpec) -> str:
    """Hash of everything in the spec but its description and its fields at their defaults
    (``formats.config_hash``: a field added later keeps old hashes): each run records the hashes
    of the specs that planned it (plan.json), and analysis uses the runs of the current one only."""
    return config_hash(spec, exclude={"description"})


def _describe(err: ValidationError) -> str:
    """``models[1]: unknown preset 'xxl'`` style lines; list indices in brackets."""
    return describe_validation_error(err, StudySpec)


def parse_spec(data: dict[str, Any]) -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as err:
        raise StudySpecError(_describe(err)) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study YAML; errors name the file (and line, for YAML syntax)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudySpecError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise StudySpecError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise StudySpecError(f"{where}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise StudySpecError(f"{path}: expected a mapping at the top level")
    try:
        return parse_spec(data)
    except StudySpecError as err:
        raise StudySpecError(f"{path}:\n{err}") from None


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise StudySpecError(f"preset: unknown preset {name!r}; choose from {known}")
    return path


def load_preset(name: str) -> StudySpec:
    return load_spec(preset_path(name))
