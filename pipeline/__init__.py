"""Unique-token budgets: nested, deterministic, leak-free training budgets of a corpus.

Light at import time: datatrove and tokenizers load only when a build runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError
from pipeline.manifest import BudgetManifest, load_manifest
from pipeline.spec import BudgetSpec
from pipeline.tokens import read_tokens

if TYPE_CHECKING:
    from pipeline.budgets import build_budgets

__all__ = [
    "BudgetManifest",
    "BudgetSpec",
    "PipelineError",
    "build_budgets",
    "load_manifest",
    "read_tokens",
]


def __getattr__(name: str) -> Any:
    if name == "build_budgets":
        from pipeline.budgets import build_budgets

        return build_budgets
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
