"""One transformer, two objectives (AR and masked diffusion), one trainer: ``train_run``."""

from typing import Any

from training_core.config import ConfigError, DataConfig, EvalConfig, OptimConfig, RunConfig
from training_core.model import ModelConfig, model_preset
from training_core.objectives import ObjectiveConfig
from training_core.run_io import RunResult

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "RunResult",
    "StopRun",
    "model_preset",
    "train_run",
]


def __getattr__(name: str) -> Any:
    # The trainer pulls in evaluation/scoring/flops; configs alone (flows/, analysis/) need not.
    if name in ("train_run", "StopRun"):
        from training_core import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'training_core' has no attribute {name!r}")
