"""Record readers that never drop data in silence, and the tally of what they could not read.

datatrove's own JSONL reader stops reading a file at its first undecodable line (logging a
warning) and skips records without a text field; here every record that cannot become a
document is either counted (reason, file, first line numbers) or fails the build with one line
naming the file and line, as the spec's ``source.on_bad_record`` says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from datatrove.data import Document
from datatrove.pipeline.readers.base import BaseDiskReader

from pipeline.errors import PipelineError

OnBadRecord = Literal["skip", "fail"]
_MAX_LINES = 5  # line numbers kept per (reason, file)
_MAX_FILES = 20  # files kept per reason; the count still covers all of them


class BadRecordTally:
    """Skipped records by reason and file, with the first few line numbers and one example.

    ``add`` raises `PipelineError` instead when the policy is ``fail`` and the record is fatal.
    The tally is written as JSON next to the datatrove logs, since datatrove runs a deep copy of
    each step and only numeric counters come back from it.
    """

    def __init__(self, on_bad_record: OnBadRecord):
        self.on_bad_record = on_bad_record
        self.reasons: dict[str, dict[str, Any]] = {}

    def add(
        self,
        reason: str,
        path: str,
        line: int | None,
        detail: str,
        fatal: bool = True,
        count: int = 1,
    ) -> None:
        """One bad record (or `count` of them, e.g. every row of a file without the column)."""
        where = f"{path}:{line}" if line is not None else path
        if fatal and self.on_bad_record == "fail":
            raise PipelineError(
                f"{where}: {detail} (source.on_bad_record: fail; set it to 'skip' to count "
                "and skip such records)"
            )
        entry = self.reasons.setdefault(reason, {"count": 0, "example": f"{where}: {detail}"})
        entry["count"] += count
        files = entry.setdefault("files", {})
        if path in files or len(files) < _MAX_FILES:
            per_file = files.setdefault(path, {"count": 0, "lines": []})
            per_file["count"] += count
            if line is not None and len(per_file["lines"]) < _MAX_LINES:
                per_file["lines"].append(line)

    def write(self, path: Path | None) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.reasons, indent=2, sort_keys=True))


def read_tally(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def format_bad_records(bad_records: dict, max_files: int = 3) -> list[str]:
    """One terminal line per skip reason: the count, then the first files with their lines."""
    lines = []
    for reason, entry in sorted(bad_records.items()):
        files = list(entry.get("files", {}).items())
        where = "; ".join(
            f"{path}" + (f" lines {info['lines']}" if info["lines"] else "")
            for path, info in files[:max_files]
        )
        more = (
            f" (+{len(files) - max_files} more in the manifest)" if len(files) > max_files else ""
        )
        lines.append(f"skipped {entry['count']} {reason}: {where}{more}")
    return lines


def line_of_offset(raw: bytes, offset: int) -> int:
    """1-based line number of byte `offset` in `raw`."""
    return raw.count(b"\n", 0, offset) + 1


class _TallyReader(BaseDiskReader):
    """A disk reader that builds documents itself and reports what it skipped."""

    def __init__(
        self,
        data_folder: str,
        glob_pattern: str,
        text_key: str = "text",
        on_bad_record: OnBadRecord = "fail",
        tally_path: Path | None = None,
    ):
        super().__init__(data_folder, glob_pattern=glob_pattern, text_key=text_key)
        self.on_bad_record = on_bad_record
        self.tally_path = Path(tally_path) if tally_path is not None else None
        self.tally = BadRecordTally(on_bad_record)

    def bad(self, reason: str, path: str, line: int | None, detail: str, count: int = 1) -> None:
        self.tally.add(reason, self.data_folder.resolve_paths(path), line, detail, count=count)
        self.stat_update(f"skipped_{reason}", value=count)

    def document(self, text: str, path: str, index: int) -> Document:
        full = self.data_folder.resolve_paths(path)
        return Document(text=text, id=f"{path}/{index}", metadata={"file_path": full})

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.tally = BadRecordTally(self.on_bad_record)
        try:
            yield from super().run(data, rank, world_size)
        finally:  # also when a cap downstream stops the stream early
            self.tally.write(self.tally_path)


class JsonlRecordReader(_TallyReader):
    """One document per JSONL line; bad lines: undecodable, invalid_json, not_an_object,
    missing_text_field, text_not_string. Blank lines hold no record and are passed over."""

    name = "jsonl records"

    def read_file(self, filepath: str):
        import orjson

        with self.data_folder.open(filepath, "rb", compression="infer") as f:
            for index, raw in enumerate(f):
                line = index + 1
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    self.bad(
                        "undecodable",
                        filepath,
                        line,
                        f"not UTF-8 ({err.reason} at byte {err.start} of the line)",
                    )
                    continue
                if not decoded.strip():
                    continue
                try:
                    record = orjson.loads(decoded)
                except orjson.JSONDecodeError as err:
                    self.bad("invalid_json", filepath, line, f"invalid JSON ({err})")
                    continue
                text = self._text_of(record, filepath, line)
                if text is not None:
                    yield self.document(text, filepath, index)

    def _text_of(self, record: Any, filepath: str, line: int) -> str | None:
        if not isinstance(record, dict):
            self.bad(
                "not_an_object", filepath, line, f"a JSON {type(record).__name__}, not an object"
            )
            return None
        if self.text_key not in record:
            self.bad(
                "missing_text_field",
                filepath,
                line,
                f"no field {self.text_key!r} (keys found: {sorted(record)}); set source.text_key",
            )
            return None
        text = record[self.text_key]
        if not isinstance(text, str):
            self.bad(
                "text_not_string",
                filepath,
                line,
                f"field {self.text_key!r} is {type(text).__name__}, not a string",
            )
            return None
        return text


class ParquetRecordReader(_TallyReader):
    """One document per row of the text column (``lines`` in the tally are 1-based rows)."""

    name = "parquet records"

    def read_file(self, filepath: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as pqf:
            names = pqf.schema_arrow.names
            if self.text_key not in names:
                detail = (
                    f"no column {self.text_key!r} (columns found: {names}); set source.text_key"
                )
                self.bad("missing_text_field", filepath, None, detail, pqf.metadata.num_rows)
                return
            column_type = pqf.schema_arrow.field(self.text_key).type
            is_binary = pa.types.is_binary(column_type) or pa.types.is_large_binary(column_type)
            if not (
                is_binary
                or pa.types.is_string(column_type)
                or pa.types.is_large_string(column_type)
            ):
                detail = f"column {self.text_key!r} is {column_type}, not a string"
                self.bad("text_not_string", filepath, None, detail, pqf.metadata.num_rows)
                return
            index = 0
            for batch in pqf.iter_batches(columns=[self.text_key]):
                for value in batch.column(0).to_pylist():
                    index += 1
                    text = self._row_text(value, filepath, index)
                    if text is not None:
                        yield self.document(text, filepath, index - 1)

    def _row_text(self, value: Any, filepath: str, row: int) -> str | None:
        if value is None:
            self.bad("text_not_string", filepath, row, f"column {self.text_key!r} is null")
            return None
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError as err:
                self.bad("undecodable", filepath, row, f"not UTF-8 ({err.reason})")
                return None
        return value
