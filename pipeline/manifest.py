"""`BudgetManifest`: the contract between the budget builder and training (docs/design.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import PipelineError

MANIFEST_NAME = "manifest.json"


class BudgetManifest(BaseModel):
    """One built budget: its exact token count, files, tokenizer and provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_id: str
    spec_hash: str
    requested_tokens: int
    unique_tokens: int
    n_documents: int
    token_dtype: Literal["uint16", "uint32"]
    vocab_size: int
    eos_id: int | None
    tokenizer_path: str
    tokenizer_sha256: str
    train_files: list[str]
    val_files: list[str]
    val_tokens: int
    eval_mc_path: str
    content_sha256: str
    seed: int
    source_stats: dict[str, Any]
    filter_stats: dict[str, Any]
    created_at: str


def load_manifest(path: str | Path) -> BudgetManifest:
    """Read a manifest.json (or the budget directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise PipelineError(f"manifest not found: {path}")
    try:
        return BudgetManifest.model_validate_json(path.read_text())
    except ValidationError as err:
        raise PipelineError(f"invalid manifest {path}: {err}") from err


def write_manifest(manifest: BudgetManifest, path: Path) -> None:
    path.write_text(manifest.model_dump_json(indent=2))
