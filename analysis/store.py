"""DuckDB results store: ingest per-run files idempotently, answer SQL with pandas DataFrames.

One writer process per database file (DuckDB's rule). Every operation opens a connection and
closes it before returning, so a reader in another process is blocked only while a write is in
flight, never by a store object someone forgot to close; a connection refused by another
process's lock is retried for ``lock_timeout_s`` before a one-line ``StoreBusy``.

Run directories are untrusted input (in a cluster they sit on a shared volume): their JSON keys
become column names only when they are plain names (``analysis.run_files``), values are bound,
and a run whose files cannot be read is skipped and reported, never blocking the others. The
database is derived data: a file DuckDB cannot open (empty, truncated by a full disk, corrupt) is
moved aside and rebuilt from the run directories, with a one-line notice.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from analysis.run_files import (  # noqa: F401 - flatten_config, is_run_dir: public here too
    BadRunFile,
    check_parquet,
    flatten_config,
    is_run_dir,
    run_record,
)
from analysis.schema import (
    BUDGET_BASE_COLUMNS,
    CURRENT_SPEC_COLUMNS,
    EVAL_COLUMNS,
    METRIC_COLUMNS,
    RUN_BASE_COLUMNS,
    VIEWS_SQL,
    create_table_sql,
)
from formats.budget import MANIFEST_NAME
from formats.run_dir import CONFIG_FILE, EVALS_FILE, METRICS_FILE, RESULT_FILE

LOCK_TIMEOUT_S = 120.0


class StoreBusy(RuntimeError):
    """Another process holds the database file longer than the store waits."""


@dataclass(frozen=True)
class IngestStats:
    """What one ingest call wrote (rows now in the store for the runs it touched), and the run
    dirs it skipped as ``(run dir, reason)``."""

    runs: int = 0
    metric_rows: int = 0
    eval_rows: int = 0
    nonfinite_eval_rows: int = 0
    skipped: tuple[tuple[str, str], ...] = ()

    def __add__(self, other: IngestStats) -> IngestStats:
        return IngestStats(
            self.runs + other.runs,
            self.metric_rows + other.metric_rows,
            self.eval_rows + other.eval_rows,
            self.nonfinite_eval_rows + other.nonfinite_eval_rows,
            self.skipped + other.skipped,
        )


def _sql_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return "VARCHAR"


def _to_sql_value(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
        [table],
    ).fetchall()
    return {name: typ for name, typ in rows}


def _widen_schema(
    con: duckdb.DuckDBPyConnection, table: str, row: dict[str, Any], existing: dict[str, str]
) -> dict:
    """Add columns this row brings; widen BIGINT->DOUBLE->VARCHAR on conflicts. Returns the row
    with values coerced to the (possibly widened) column types; ``existing`` is kept current."""
    out: dict[str, Any] = {}
    for col, raw in row.items():
        value = _to_sql_value(raw)
        want = _sql_type(value) if value is not None else None
        have = existing.get(col)
        if have is None:
            if want is None:
                continue  # an all-NULL column appears once some run has a value for it
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{col}" {want}')
            existing[col] = have = want
        if want is not None and want != have:
            if have == "VARCHAR":
                value = str(value)
            elif have in ("BIGINT", "INTEGER") and want == "DOUBLE":
                con.execute(f'ALTER TABLE {table} ALTER "{col}" SET DATA TYPE DOUBLE')
                existing[col] = "DOUBLE"
            elif not (have == "DOUBLE" and want == "BIGINT") and have != "TIMESTAMP":
                con.execute(f'ALTER TABLE {table} ALTER "{col}" SET DATA TYPE VARCHAR')
                existing[col] = "VARCHAR"
                value = str(value)
        out[col] = value
    return out


def _insert_row(
    con: duckdb.DuckDBPyConnection, table: str, row: dict[str, Any], existing: dict[str, str]
) -> None:
    row = _widen_schema(con, table, row, existing)
    cols = ", ".join(f'"{c}"' for c in row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))


def _insert_parquet(
    con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], files: pd.DataFrame
) -> None:
    """Insert per-run parquet files into ``table`` with DuckDB's own reader.

    ``files`` has (path, run_id, file_idx). The run id comes from the run dir, not the file;
    columns a file lacks become NULL; rows are deduped on (run_id, step), the last row of the
    last file winning.
    """
    paths = files["path"].tolist()
    con.register("batch_files", files)
    present = {
        row[0]
        for row in con.execute(
            "DESCRIBE SELECT * FROM read_parquet(?, union_by_name=true)", [paths]
        ).fetchall()
    }
    # A branch row may share its step with a main-run row (a branch ending where another eval
    # is): the eval kind is part of the key where files have it.
    key = ", p.kind" if "kind" in present else ""
    select = ", ".join(
        f'TRY_CAST(p."{col}" AS {typ}) AS "{col}"' if col in present else f'NULL::{typ} AS "{col}"'
        for col, typ in columns.items()
        if col != "run_id"
    )
    con.execute(
        f"""INSERT INTO {table} BY NAME
        SELECT * EXCLUDE (rk) FROM (
            SELECT f.run_id, {select},
                   row_number() OVER (PARTITION BY f.run_id, TRY_CAST(p.step AS BIGINT){key}
                                      ORDER BY f.file_idx DESC, p.file_row_number DESC) AS rk
            FROM read_parquet(?, union_by_name=true, filename=true, file_row_number=true) p
            JOIN batch_files f ON p.filename = f.path
        ) WHERE rk = 1""",
        [paths],
    )
    con.unregister("batch_files")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


class ResultsStore:
    """The study's DuckDB file. Use as a context manager; it is the single writer for its file."""

    def __init__(self, db_path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.db_path = Path(db_path)
        self.lock_timeout_s = lock_timeout_s
        self._schema_ready = False
        self.rebuilt_from: Path | None = None  # where an unreadable file was moved, if any

    def __enter__(self) -> ResultsStore:
        self.ensure_schema()
        return self

    def __exit__(self, *exc: object) -> None:
        # Nothing to release: connections never outlive one operation.
        return None

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection, retried while another process's lock refuses it."""
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only)
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"{self.db_path} is held by another process (a sweep writing, or an open "
                        f"SQL session) for over {self.lock_timeout_s:.0f} s; close it and rerun"
                    ) from None
                time.sleep(0.5)

    def _set_aside(self, err: Exception) -> None:
        """Move an unreadable database file away; the next ingest rebuilds it from run dirs."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        aside = self.db_path.with_name(f"{self.db_path.name}.unreadable-{stamp}")
        self.db_path.rename(aside)
        for wal in (self.db_path.with_name(self.db_path.name + ".wal"),):
            wal.unlink(missing_ok=True)
        self.rebuilt_from = aside
        reason = str(err).strip().splitlines()[0][:160]
        print(
            f"results: {self.db_path} could not be opened ({reason}); moved to {aside.name} and "
            "rebuilt from the run directories",
            file=sys.stderr,
        )

    @contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if not read_only:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = self._open(read_only)
        except StoreBusy:
            raise
        except duckdb.Error as err:
            if read_only or not self.db_path.exists():
                raise
            self._set_aside(err)
            self._schema_ready = False
            con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    def ensure_schema(self) -> None:
        """Create missing tables and columns and (re)create the views; once per store object."""
        if self._schema_ready and self.db_path.exists():
            return
        with self._connect() as con:
            con.execute(create_table_sql("runs", RUN_BASE_COLUMNS))
            con.execute(create_table_sql("metrics", METRIC_COLUMNS))
            con.execute(create_table_sql("evals", EVAL_COLUMNS))
            con.execute(create_table_sql("budgets", BUDGET_BASE_COLUMNS))
            con.execute(create_table_sql("current_spec", CURRENT_SPEC_COLUMNS))
            have = _table_columns(con, "runs")
            for col, typ in RUN_BASE_COLUMNS.items():  # a store made by an older version
                if col not in have:
                    con.execute(f'ALTER TABLE runs ADD COLUMN "{col}" {typ}')
            for sql in VIEWS_SQL:
                con.execute(sql)
        self._schema_ready = True

    def set_current_spec(self, spec_hash: str | None) -> None:
        """Analysis uses only runs planned by ``spec_hash`` (None: every run)."""
        self.ensure_schema()
        with self._connect() as con:
            con.execute("DELETE FROM current_spec")
            if spec_hash is not None:
                con.execute("INSERT INTO current_spec VALUES (?)", [spec_hash])

    def _read_batch(
        self, run_dirs: list[Path]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple[str, str, int]]], list]:
        """Parse every run's files before anything is deleted; a run whose files cannot be read
        is left out and listed as (run dir, reason)."""
        records: dict[str, dict[str, Any]] = {}
        files: dict[str, list[tuple[str, str, int]]] = {"metrics": [], "evals": []}
        skipped = []
        for idx, run_dir in enumerate(run_dirs):
            try:
                row, run_id = run_record(run_dir)
                found = {"metrics": run_dir / METRICS_FILE, "evals": run_dir / EVALS_FILE}
                for path in found.values():
                    if path.exists():
                        check_parquet(path)
            except BadRunFile as err:
                skipped.append((str(run_dir), str(err)))
                continue
            records[run_id] = row
            for table, path in found.items():
                if path.exists():
                    files[table].append((str(path), run_id, idx))
        return records, files, skipped

    def _ingest_batch(self, con: duckdb.DuckDBPyConnection, run_dirs: list[Path]) -> IngestStats:
        """Replace the rows of these runs in one transaction; a run id met twice keeps its last
        dir. A batch that DuckDB refuses (a Parquet file corrupt past its footer) is redone one
        run at a time, so one bad run is skipped and reported and the others go in."""
        records, files, skipped = self._read_batch(run_dirs)
        try:
            stats = self._write_batch(con, records, files)
        except duckdb.Error as err:
            if len(run_dirs) == 1:
                return IngestStats(skipped=((str(run_dirs[0]), _first_line(err)),))
            stats = IngestStats()
            for run_dir in sorted({Path(r["run_dir"]) for r in records.values()}):
                stats = stats + self._ingest_batch(con, [run_dir])
        return stats + IngestStats(skipped=tuple(skipped))

    def _write_batch(
        self,
        con: duckdb.DuckDBPyConnection,
        records: dict[str, dict[str, Any]],
        files: dict[str, list[tuple[str, str, int]]],
    ) -> IngestStats:
        ids = pd.DataFrame({"run_id": list(records)})
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("batch_ids", ids)
            for table in ("runs", "metrics", "evals"):
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM batch_ids)")
            existing = _table_columns(con, "runs")
            for row in records.values():
                _insert_row(con, "runs", row, existing)
            for table, columns in (("metrics", METRIC_COLUMNS), ("evals", EVAL_COLUMNS)):
                # Keep only each run id's last dir (same rule as ``records``).
                frame = pd.DataFrame(files[table], columns=["path", "run_id", "file_idx"])
                frame = frame.drop_duplicates("run_id", keep="last")
                if len(frame):
                    _insert_parquet(con, table, columns, frame)
            n_metrics, n_evals, n_bad = con.execute(
                """SELECT (SELECT count(*) FROM metrics
                           WHERE run_id IN (SELECT run_id FROM batch_ids)),
                          count(*),
                          count(*) FILTER (WHERE val_loss IS NULL OR NOT isfinite(val_loss))
                   FROM evals WHERE run_id IN (SELECT run_id FROM batch_ids)"""
            ).fetchone()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("batch_ids")
        return IngestStats(len(records), int(n_metrics), int(n_evals), int(n_bad))

    def ingest_run_dir(self, path: str | Path) -> IngestStats:
        """Replace one run's rows with what its directory holds now (one transaction)."""
        run_dir = Path(path)
        if not is_run_dir(run_dir):
            raise FileNotFoundError(f"{run_dir} is not a run dir (no config.json or result.json)")
        self.ensure_schema()
        with self._connect() as con:
            return self._ingest_batch(con, [run_dir])

    def ingest_runs_root(self, path: str | Path, batch_size: int = 256) -> IngestStats:
        """Ingest every run dir below ``path``, ``batch_size`` runs per transaction (sorted, so
        reruns touch rows in the same order). Skipped runs are in the result's ``skipped``."""
        root = Path(path)
        self.ensure_schema()
        found = {p.parent for pat in (CONFIG_FILE, RESULT_FILE) for p in root.rglob(pat)}
        run_dirs = sorted(d for d in found if is_run_dir(d))
        total = IngestStats()
        with self._connect() as con:
            for lo in range(0, len(run_dirs), batch_size):
                total = total + self._ingest_batch(con, run_dirs[lo : lo + batch_size])
        return total

    def ingest_manifest(self, path: str | Path) -> None:
        """Insert or replace one budget from its ``manifest.json`` (key: budget_id + spec_hash)."""
        manifest_path = Path(path)
        if manifest_path.is_dir():
            manifest_path = manifest_path / MANIFEST_NAME
        manifest = json.loads(manifest_path.read_text())
        row = {c: None for c in BUDGET_BASE_COLUMNS} | manifest
        row["manifest_path"] = str(manifest_path.resolve())
        self.ensure_schema()
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(
                    "DELETE FROM budgets WHERE budget_id = ? AND spec_hash IS NOT DISTINCT FROM ?",
                    [row["budget_id"], row["spec_hash"]],
                )
                _insert_row(con, "budgets", row, _table_columns(con, "budgets"))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL on a short-lived read-only connection and return a DataFrame."""
        if not self.db_path.exists():
            self.ensure_schema()
        with self._connect(read_only=True) as con:
            return con.execute(sql, params or []).fetchdf()

    def replace_derived_table(self, name: str, frame: pd.DataFrame) -> None:
        """Replace table ``name`` with ``frame`` in one transaction: derived results (law fits,
        crossovers) that each analysis recomputes whole, so a rerun never duplicates rows."""
        if not name.isidentifier():
            raise ValueError(f"name: table name must be an identifier, got {name!r}")
        self.ensure_schema()
        with self._connect() as con:
            con.register("derived_frame", frame)
            con.execute("BEGIN TRANSACTION")
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM derived_frame")
            con.execute("COMMIT")
            con.unregister("derived_frame")

    def drop_derived_table(self, name: str) -> None:
        """Drop derived table ``name`` if present (its inputs are gone: no stale answers)."""
        if not name.isidentifier():
            raise ValueError(f"name: table name must be an identifier, got {name!r}")
        with self._connect() as con:
            con.execute(f"DROP TABLE IF EXISTS {name}")
