"""`BudgetManifest`, the contract between the budget builder and training, is ``formats.budget``;
here it is loaded with the builder's error type."""

from __future__ import annotations

from pathlib import Path

from formats.budget import MANIFEST_NAME, BudgetManifest, write_manifest
from formats.budget import load_manifest as _load
from formats.errors import FormatError
from pipeline.errors import PipelineError

__all__ = ["MANIFEST_NAME", "BudgetManifest", "load_manifest", "write_manifest"]


def load_manifest(path: str | Path) -> BudgetManifest:
    """Read a manifest.json (or the budget directory holding one); ``PipelineError`` if bad."""
    try:
        return _load(path)
    except FormatError as err:
        raise PipelineError(str(err)) from err
