"""Reading one run directory for ingest: its files are untrusted input.

In a cluster, run directories sit on a shared volume that more people can write than should run
SQL as the ingesting user. So a JSON key becomes a column name only when it is a plain lower-case
name (``_NAME``); a nested mapping with any other key is kept whole as JSON data; such a key at
the top, unreadable JSON or a Parquet file without a readable footer raise ``BadRunFile`` naming
the file, and the store skips that run and reports it. Values are never put in SQL text: the store
binds them as parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from analysis.schema import RUN_BASE_COLUMNS
from formats.hashing import sha256_hex
from formats.run_dir import CONFIG_FILE, FAILURE_FILE, PLAN_FILE, RESULT_FILE, RUNS_DIR, is_run_dir

__all__ = ["BadRunFile", "check_parquet", "flatten_config", "is_run_dir", "run_record"]

# result.json fields that may be missing while a run is in flight: take them from config.json.
_FROM_CONFIG = {
    "objective": "cfg_objective_kind",
    "model_name": "cfg_model_name",
    "unique_tokens": "cfg_data_unique_tokens",
    "budget_id": "cfg_data_budget_id",
    "epochs": "cfg_epochs",
    "seed": "cfg_seed",
}


# A column name taken from a run's files: lower-case letters, digits and "_" (what our configs
# and result.json use). Anything else is refused, so file contents never become SQL text.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,127}$")


class BadRunFile(ValueError):
    """A run directory whose files cannot be ingested; the message names the file and why."""


def _check_name(name: str, source: Path | str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRunFile(f"{source}: key {str(name)[:80]!r} is not a plain lower-case name")
    return name


def flatten_config(
    config: Mapping[str, Any], prefix: str = "cfg", source: Path | str = "config"
) -> dict[str, Any]:
    """Nested config -> flat "_"-joined columns: {"model": {"depth": 4}} -> cfg_model_depth.
    A nested mapping with a key that is no plain name is kept whole, as JSON data in its parent's
    column; such a key at the top raises ``BadRunFile`` naming ``source``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        _check_name(key, source)
        name = _check_name(f"{prefix}_{key}" if prefix else str(key), source)
        if isinstance(value, Mapping) and not all(
            isinstance(k, str) and _NAME.match(k) for k in value
        ):
            flat[name] = dict(value)  # data, never identifiers
        elif isinstance(value, Mapping):
            flat.update(flatten_config(value, name, source))
        else:
            flat[name] = value
    return flat


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON object from a run file ({} when absent); ``BadRunFile`` when unreadable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRunFile(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(data, dict):
        raise BadRunFile(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def check_parquet(path: Path) -> None:
    """Footer and schema readable, or ``BadRunFile`` (a truncated or corrupt file)."""
    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as err:
        raise BadRunFile(f"{path}: unreadable Parquet ({err})") from None


def run_record(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The ``runs`` row for a run dir (result.json over config.json) and its run id."""
    config = _read_object(run_dir / CONFIG_FILE)
    result = _read_object(run_dir / RESULT_FILE)
    failure = _read_object(run_dir / FAILURE_FILE)
    plan = _read_object(run_dir / PLAN_FILE)
    row: dict[str, Any] = {c: None for c in RUN_BASE_COLUMNS}
    row.update(flatten_config(config, source=run_dir / CONFIG_FILE))
    for key in result:
        _check_name(key, run_dir / RESULT_FILE)
    row.update(result)
    for col, cfg_col in _FROM_CONFIG.items():
        if row.get(col) is None:
            row[col] = row.get(cfg_col)
    run_id = str(result.get("run_id") or config.get("run_id") or run_dir.name)
    row["run_id"] = run_id
    if not result and failure:  # the worker died for good: failed, with the dispatcher's reason
        row["status"], row["failure_reason"] = "failed", str(failure.get("failure_reason"))
    row["status"] = row.get("status") or "running"
    hashes = plan.get("spec_hashes") or []
    row["spec_hashes"] = ",".join(str(h) for h in hashes) if isinstance(hashes, list) else None
    row["run_dir"] = str(run_dir.resolve())
    row["study"] = run_dir.parent.parent.name if run_dir.parent.name == RUNS_DIR else None
    row["config_sha256"] = sha256_hex(config) if config else None
    row["ingested_at"] = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return row, run_id
