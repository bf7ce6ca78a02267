"""The one error type the budget builder raises for bad input."""

from __future__ import annotations


class PipelineError(ValueError):
    """Bad input to the budget builder: the message names the field, path or count at fault."""
