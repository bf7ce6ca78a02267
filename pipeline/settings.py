"""Project-wide settings: one place, one env prefix (``CROSSOVER_``).

Read when called, never at import time, so tests can point ``CROSSOVER_HOME`` at a temp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Environment every process of a study should see: no hub downloads, no telemetry, quiet tokenizers.
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


class StudySettings(BaseSettings):
    """Where studies write and how they reach services; override with CROSSOVER_* env vars."""

    model_config = SettingsConfigDict(env_prefix="CROSSOVER_", frozen=True, extra="ignore")

    home: Path = Field(
        default=Path("studies"),
        description="Root folder for budgets, run directories, DuckDB files and reports.",
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to use ('auto' or 'ray://host:port'); None starts a local Ray.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1, le=4096, description="CPUs for the embedded local Ray (default: all)."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, le=1024, description="Intra-op threads per training run on the CPU."
    )

    @property
    def budgets_dir(self) -> Path:
        return self.home / "budgets"

    def study_dir(self, study_name: str) -> Path:
        return self.home / study_name


def get_settings() -> StudySettings:
    return StudySettings()


def apply_offline_defaults(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set the offline/quiet variables unless the user set them; returns the values in force."""
    target = os.environ if env is None else env
    for key, value in OFFLINE_ENV.items():
        target.setdefault(key, value)
    return {key: target[key] for key in OFFLINE_ENV}
