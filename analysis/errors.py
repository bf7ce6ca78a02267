"""The error analysis raises for bad or insufficient input; its message names what is missing."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Input cannot support the requested analysis (too few runs, missing objective or budget)."""
