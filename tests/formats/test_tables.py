"""DuckDB columns come from the file formats; the package imports no project package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats.budget import BudgetManifest
from formats.run_dir import EVALS_SCHEMA, RunResult
from formats.tables import arrow_columns, model_columns

ROOT = Path(__file__).resolve().parents[2]


def test_arrow_columns_are_what_duckdb_reads_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "evals.parquet"
    pq.write_table(pa.Table.from_pylist([], EVALS_SCHEMA), path)
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    assert {name: typ for name, typ, *_ in described} == arrow_columns(EVALS_SCHEMA)


def test_model_columns_follow_the_json_records() -> None:
    runs = model_columns(RunResult)
    assert list(runs) == list(RunResult.model_fields)
    assert runs["n_params"] == "BIGINT" and runs["final_val_loss"] == "DOUBLE"
    assert runs["status"] == "VARCHAR"  # a Literal of strings
    budgets = model_columns(BudgetManifest)
    assert budgets["train_files"] == "VARCHAR" and budgets["eos_id"] == "BIGINT"


@pytest.mark.parametrize("package", ["formats", "pipeline", "training_core", "analysis"])
def test_packages_import_formats_and_none_of_each_other(package: str) -> None:
    """formats/ imports no project package; pipeline, training_core and analysis only formats."""
    project = {"formats", "pipeline", "training_core", "flows", "analysis"}
    code = f"import json, sys, {package}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)} & project
    assert loaded <= {package, "formats"}, loaded
