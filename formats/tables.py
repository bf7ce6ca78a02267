"""DuckDB column types derived from the file formats, so the store never re-declares them."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel

_ARROW_TO_DUCKDB = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}
_PY_TO_DUCKDB = {str: "VARCHAR", int: "BIGINT", float: "DOUBLE", bool: "BOOLEAN"}


def arrow_columns(schema: pa.Schema) -> dict[str, str]:
    """A Parquet file's columns as DuckDB types, in file order."""
    return {f.name: _ARROW_TO_DUCKDB[f.type] for f in schema}


def _duckdb_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X]: X's type, NULL allowed anyway
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _duckdb_type(inner)
    if origin is Literal:
        return _PY_TO_DUCKDB[type(typing.get_args(annotation)[0])]
    if origin in (list, tuple, dict):
        return "VARCHAR"  # stored as JSON text
    return _PY_TO_DUCKDB[annotation]


def model_columns(model: type[BaseModel]) -> dict[str, str]:
    """A JSON record's fields (a pydantic model) as DuckDB types, in declaration order."""
    return {name: _duckdb_type(f.annotation) for name, f in model.model_fields.items()}
