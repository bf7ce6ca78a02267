"""The error type of the budget builder for bad input, and pydantic errors as plain lines."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


class PipelineError(ValueError):
    """Bad input to the budget builder: the message names the field, path or count at fault."""


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model a location points into (through Optional, tuples and dicts)."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _find_model(field.annotation) if field is not None else None
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple, list, dict):
        for arg in typing.get_args(annotation):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One ``field.path: problem (got value)`` line per error; unknown fields list the allowed
    ones. Our own validators already start with the field path, so it is not printed twice."""
    lines = []
    for e in err.errors():
        path = ""
        for part in e["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, e["loc"][:-1])
            if parent is not None:
                msg += f"; allowed: {', '.join(parent.model_fields)}"
        elif e["type"] not in ("value_error", "missing") and "input" in e:
            msg += f" (got {_short(e['input'])})"
        own = not path or msg.startswith(path.split(".")[0])
        lines.append(msg if own else f"{path}: {msg}")
    return "\n".join(lines)


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (exit 2), not the whole usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
