"""Every on-disk contract of a study, in one place: the budget manifest, the run directory and its
files, the Parquet schemas, ``RunResult``, the config hash, and their readers and writers.

pipeline/ writes manifests, training_core/ writes run directories, flows/ plans and watches them,
analysis/ reads both; all four import this package, and it imports none of them (only pydantic,
pyarrow and the standard library), so the four keep importing none of each other.
"""

from formats.budget import (
    MANIFEST_NAME,
    BudgetManifest,
    DataConfig,
    load_manifest,
    manifest_paths,
    write_manifest,
)
from formats.errors import FormatError, describe_validation_error
from formats.hashing import canonical_json, config_hash, hashed_defaults, sha256_hex
from formats.run_dir import EVALS_SCHEMA, METRICS_SCHEMA, RunResult

__all__ = [
    "EVALS_SCHEMA",
    "MANIFEST_NAME",
    "METRICS_SCHEMA",
    "BudgetManifest",
    "DataConfig",
    "FormatError",
    "RunResult",
    "canonical_json",
    "config_hash",
    "describe_validation_error",
    "hashed_defaults",
    "load_manifest",
    "manifest_paths",
    "sha256_hex",
    "write_manifest",
]
