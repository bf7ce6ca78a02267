"""The error type of the budget builder for bad input, and pydantic errors as plain lines."""

from __future__ import annotations

import argparse
import typing

from formats.errors import describe_validation_error

__all__ = ["OneLineArgumentParser", "PipelineError", "describe_validation_error"]


class PipelineError(ValueError):
    """Bad input to the budget builder: the message names the field, path or count at fault."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (exit 2), not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
