"""Errors of the on-disk formats, and pydantic validation errors as one line per field."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


class FormatError(ValueError):
    """A file that is missing or does not hold its format; the message names the file."""


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


# Our validators start their message with the field they blame ("warmup: ..."), relative to the
# model they validate; spliced onto the error's location it reads "optim.warmup: ...".
_NAMED = re.compile(r"([A-Za-z_][\w.\[\]]*): (.*)", flags=re.DOTALL)


def describe_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One ``field.path: problem (got value)`` line per error; unknown fields list the allowed
    ones. A validator's message that starts with its field is joined onto the location."""
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
        own = not path or msg.startswith(path.split(".")[0].split("[")[0])
        named = _NAMED.match(msg) if e["type"] == "value_error" else None
        if own:
            lines.append(msg)
        elif named:
            lines.append(f"{path}.{named[1]}: {named[2]}")
        else:
            lines.append(f"{path}: {msg}")
    return "\n".join(lines)
