"""Run configuration: one frozen, hashable record of everything that determines a training run.

``RunConfig.run_id`` is the first 16 hex digits of the sha256 of the canonical JSON of the fields
not at their defaults (``formats.config_hash``), so two runs with the same config share a run
directory (skip when finished, resume when interrupted) and a field added later at its default
keeps every earlier id. ``DataConfig`` (the budget a run reads) is ``formats.DataConfig``.
Everything that changes results lives here; things that only change speed or logging
(``threads``, ``checkpoint_every_steps``) are here too because a user should see them, but they are
excluded from the hash so a rerun on another machine finds the same run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from formats.budget import DataConfig
from formats.errors import describe_validation_error
from formats.hashing import config_hash
from training_core.model import ModelConfig
from training_core.objectives import ObjectiveConfig

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# Fields that change speed, logging or fault tolerance but not a single number the run computes.
# loss_impl: the fused head + CE computes the same loss and gradients (tests/training_core/
# test_fused_ce.py), only faster / in less memory.
_NOT_HASHED = ("threads", "checkpoint_every_steps", "compile", "loss_impl")


class OptimConfig(BaseModel):
    """AdamW and the learning-rate schedule; ``batch_size`` counts sequences per optimizer step."""

    model_config = _FROZEN

    lr: float = Field(default=1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(
        default=0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak."
    )
    warmup: float = Field(
        default=0.05,
        ge=0,
        description="Linear warmup: a value < 1 is a fraction of all steps, >= 1 a step count.",
    )
    schedule: Literal["cosine", "wsd"] = Field(
        default="cosine", description="Warmup+cosine, or warmup-stable-decay (linear decay)."
    )
    decay_frac: float = Field(
        default=0.2, gt=0, le=1, description="WSD only: fraction of all steps spent decaying."
    )
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = Field(default=(0.9, 0.95))
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="Max global grad norm; None disables clipping."
    )
    batch_size: int = Field(
        default=32, ge=1, description="Sequences per optimizer step (the science batch)."
    )
    grad_accum: int = Field(
        default=1, ge=1, description="Micro-batches per step; batch_size is split across them."
    )

    @model_validator(mode="after")
    def _check(self) -> OptimConfig:
        if self.warmup >= 1 and self.warmup != int(self.warmup):
            raise ValueError(f"warmup: a step count must be an integer, got {self.warmup}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"grad_accum: must divide batch_size ({self.batch_size}), got {self.grad_accum}"
            )
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas: each must lie in [0, 1), got {self.betas}")
        return self


class EvalConfig(BaseModel):
    """When and how much to evaluate. Evals also run at step 0 and at the last step."""

    model_config = _FROZEN

    every_epochs: float | None = Field(
        default=1.0, gt=0, description="Evaluate each time this many epochs have been completed."
    )
    every_steps: int | None = Field(default=None, ge=1, description="Also evaluate every k steps.")
    at_epochs: tuple[float, ...] = Field(
        default=(),
        description="Also evaluate when training crosses each of these epoch counts (e.g. a "
        "log-spaced grid: dense where a crossover is likely, sparse late, for less eval cost).",
    )
    at_start: bool = Field(default=True, description="Evaluate the initial model (step 0).")
    val_max_tokens: int = Field(
        default=1 << 20, ge=1, description="Validation tokens used (whole windows, in order)."
    )
    val_batch_size: int = Field(default=32, ge=1, description="Windows per validation forward.")
    elbo_samples: int = Field(
        default=32, ge=1, description="DLM: Monte Carlo t samples per validation sequence."
    )
    mc_samples: int = Field(
        default=128, ge=1, description="DLM: Monte Carlo samples per multiple-choice option."
    )
    mc_max_items: int | None = Field(
        default=None, ge=1, description="Cap on multiple-choice items (first N); None uses all."
    )
    # Annealed evaluation branches (docs/design.md "Evaluation branches"): each eval point forks
    # the run, cools it down, evaluates the finished model, and continues the stable phase.
    branches: bool = Field(
        default=False,
        description="Evaluate cooldown branches instead of mid-run points (needs schedule wsd).",
    )
    cooldown_fraction: float = Field(
        default=0.2, gt=0, le=1, description="Branch cooldown length / steps done at the fork."
    )
    decay: Literal["linear", "1-sqrt"] = Field(
        default="linear", description="Branch learning-rate shape, stable rate to floor."
    )


class RunConfig(BaseModel):
    """Everything a training run needs; see docs/design.md "training_core: train_run"."""

    model_config = _FROZEN

    model: ModelConfig
    objective: ObjectiveConfig
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    data: DataConfig
    epochs: float = Field(gt=0, description="Passes over the budget (fractional allowed).")
    seed: int = Field(default=0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="bf16 autocasts on CUDA only; the CPU always trains in fp32."
    )
    compile: bool = False
    loss_impl: Literal["plain", "chunked", "liger"] = Field(
        default="plain",
        description="LM head + cross-entropy: plain logits, our chunked autograd Function, or "
        "liger-kernel's fused kernel (CUDA, the gpu extra). Same numbers; not hashed.",
    )
    checkpoint_every_steps: int | None = Field(
        default=None, ge=1, description="Checkpoint every N steps (always at every eval)."
    )
    threads: int | None = Field(default=None, ge=1, description="torch.set_num_threads on CPU.")
    max_nonfinite: int = Field(
        default=0, ge=0, description="Non-finite losses tolerated (skipped steps) before failing."
    )

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        if self.eval.branches and self.optim.schedule != "wsd":
            raise ValueError(
                "eval.branches: cooldown branches fork a stable learning rate; set "
                f"optim.schedule to 'wsd' (got {self.optim.schedule!r})"
            )
        want = self.data.vocab_size + 1
        if self.model.vocab_size != want:
            raise ValueError(
                f"model.vocab_size: must be data.vocab_size + 1 = {want} (the extra id is the "
                f"DLM mask token), got {self.model.vocab_size}"
            )
        return self

    @property
    def mask_id(self) -> int:
        return self.data.vocab_size

    @property
    def run_id(self) -> str:
        return config_hash(self, exclude=set(_NOT_HASHED))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Validate a plain dict (e.g. parsed YAML); errors name every offending field path."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            lines = describe_validation_error(err, cls).replace("\n", "\n  ")
            raise ConfigError(f"invalid RunConfig:\n  {lines}") from err

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        import yaml

        return cls.from_dict(yaml.safe_load(Path(path).read_text()))

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


class ConfigError(ValueError):
    """A config that failed validation; the message lists ``field.path: problem`` per error."""
