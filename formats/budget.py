"""A built budget on disk: ``manifest.json`` (``BudgetManifest``) and the part of it a run reads
(``DataConfig``, the ``data`` section of every run's ``config.json``).

The fields a run needs are declared once, in ``DataConfig``; the manifest is those fields plus
the budget's provenance. Token files are flat little-endian arrays of ``token_dtype``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from formats.errors import FormatError, describe_validation_error

MANIFEST_NAME = "manifest.json"
BUDGET_DIR_PREFIX = "budget_"  # budgets/<spec_hash>/budget_<requested tokens>/manifest.json


class DataConfig(BaseModel):
    """Where a budget's tokens are, and how many: what a training run reads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_files: tuple[str, ...] = Field(min_length=1)
    val_files: tuple[str, ...] = Field(default=())
    eval_mc_path: str | None = None
    token_dtype: Literal["uint16", "uint32"] = "uint16"
    vocab_size: int = Field(ge=2, description="Tokenizer vocab; the mask id is vocab_size.")
    unique_tokens: int = Field(ge=1, description="Exact train token count of the budget.")
    budget_id: str = ""


class BudgetManifest(DataConfig):
    """One built budget: its exact token count, files, tokenizer and provenance."""

    spec_hash: str
    requested_tokens: int
    n_documents: int
    eos_id: int | None
    tokenizer_path: str
    tokenizer_sha256: str
    val_tokens: int
    content_sha256: str
    seed: int
    source_stats: dict[str, Any]
    filter_stats: dict[str, Any]
    created_at: str

    def data_config(self) -> DataConfig:
        """The run-facing part of this manifest."""
        return DataConfig(**{name: getattr(self, name) for name in DataConfig.model_fields})


def budget_dir(spec_root: Path, requested_tokens: int) -> Path:
    return Path(spec_root) / f"{BUDGET_DIR_PREFIX}{requested_tokens}"


def manifest_paths(spec_root: Path) -> list[Path]:
    """The manifests under one budget spec's folder, in path order."""
    return sorted(Path(spec_root).glob(f"{BUDGET_DIR_PREFIX}*/{MANIFEST_NAME}"))


def load_manifest(path: str | Path) -> BudgetManifest:
    """Read a manifest.json (or the budget directory holding one); ``FormatError`` names it."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(f"manifest not found: {path}")
    try:
        return BudgetManifest.model_validate_json(path.read_text())
    except ValidationError as err:
        problems = describe_validation_error(err, BudgetManifest)
        raise FormatError(f"invalid manifest {path}: {problems}") from err


def write_manifest(manifest: BudgetManifest, path: Path) -> None:
    path.write_text(manifest.model_dump_json(indent=2))
