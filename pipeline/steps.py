"""Datatrove steps of the budget builder: small classes, generator `run`, counters for every drop.

Each document carries `metadata["text_sha256"]` from the first step that sees it; the split and the
budget order are functions of that hash and the seed only, so they never depend on which sizes
were requested or on how the corpus was sharded.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipeline.minhash import MinHashIndex
from pipeline.readers import BadRecordTally, OnBadRecord, line_of_offset

# Headers of machine-written files (codec tables, Sphinx dumps, protobuf stubs, parser tables).
_GENERATED = re.compile(
    r"(?i)(auto-?generated|generated (automatically )?(by|from|with)|do not edit|machine generated)"
)
_GENERATED_HEAD_CHARS = 1024
_MAX_LINE_CHARS = 4000  # a line this long is minified or a data blob, not source
_BINARY_PROBE_BYTES = 8192


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def seeded_unit(seed: int, purpose: str, digest: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, purpose, content hash)."""
    h = hashlib.sha256(f"{seed}:{purpose}:{digest}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


class SourceTreeReader(PipelineStep):
    """Reads text files under `roots` matching `glob`, in a seed-determined order, within caps.

    Skips (counted, and listed by file in the tally): `skipped_oversized` (> max_file_bytes),
    `skipped_binary` (a NUL byte in the first 8 KB), `skipped_undecodable` (not UTF-8, with the
    line of the first bad byte). Only an undecodable file fails the build under
    ``on_bad_record="fail"``: oversized and binary files are filters by design. Caps stop reading
    once reached.
    """

    name = "source tree"
    type = "📖 - READER"

    def __init__(
        self,
        roots: list[Path],
        glob: str = "**/*.py",
        exclude_parts: tuple[str, ...] = ("__pycache__",),
        max_files: int | None = None,
        max_bytes: int | None = None,
        max_file_bytes: int = 1_000_000,
        seed: int = 0,
        on_bad_record: OnBadRecord = "skip",
        tally_path: Path | None = None,
    ):
        super().__init__()
        self.on_bad_record = on_bad_record
        self.tally_path = Path(tally_path) if tally_path is not None else None
        self.roots = [Path(r) for r in roots]
        self.glob = glob
        self.exclude_parts = set(exclude_parts)
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.max_file_bytes = max_file_bytes
        self.seed = seed

    def list_files(self) -> list[tuple[Path, str]]:
        """(absolute path, id) pairs in selection order: sorted by a seeded hash of the id."""
        found: dict[str, Path] = {}
        for i, root in enumerate(self.roots):
            for path in root.glob(self.glob):
                rel = path.relative_to(root)
                if self.exclude_parts.intersection(rel.parts) or not path.is_file():
                    continue
                found.setdefault(f"{i}:{rel.as_posix()}", path)
        order = sorted(
            found, key=lambda key: hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        )
        return [(found[key], key) for key in order]

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        tally = BadRecordTally(self.on_bad_record)
        try:
            yield from self._read(tally, rank, world_size)
        finally:
            tally.write(self.tally_path)

    def _read(self, tally: BadRecordTally, rank: int, world_size: int):
        files = self.list_files()[rank::world_size]
        self.stat_update("files_listed", value=len(files))
        n_files = n_bytes = 0
        for path, doc_id in files:
            if self.max_files is not None and n_files >= self.max_files:
                break
            if self.max_bytes is not None and n_bytes >= self.max_bytes:
                break
            size = path.stat().st_size
            if size > self.max_file_bytes:
                detail = f"{size} bytes > max_file_bytes {self.max_file_bytes}"
                self._skip(tally, "oversized", path, None, detail, fatal=False)
                continue
            raw = path.read_bytes()
            if b"\x00" in raw[:_BINARY_PROBE_BYTES]:
                self._skip(tally, "binary", path, None, "a NUL byte: binary", fatal=False)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                line = line_of_offset(raw, err.start)
                self._skip(tally, "undecodable", path, line, f"not UTF-8 ({err.reason})")
                continue
            n_files += 1
            n_bytes += len(raw)
            self.stat_update("files_read")
            self.stat_update("bytes_read", value=len(raw))
            yield Document(text=text, id=doc_id, metadata={"path": str(path)})

    def _skip(
        self,
        tally: BadRecordTally,
        reason: str,
        path: Path,
        line: int | None,
        detail: str,
        fatal: bool = True,
    ) -> None:
        tally.add(reason, str(path), line, detail, fatal=fatal)
        self.stat_update(f"skipped_{reason}")


class SourceCap(PipelineStep):
    """Stops a record stream (jsonl/parquet) after `max_docs` documents or `max_bytes` of text."""

    name = "source cap"
    type = "✂️ - FILTER"

    def __init__(self, max_docs: int | None = None, max_bytes: int | None = None):
        super().__init__()
        self.max_docs = max_docs
        self.max_bytes = max_bytes

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        n_docs = n_bytes = 0
        for doc in data:
            if self.max_docs is not None and n_docs >= self.max_docs:
                break
            if self.max_bytes is not None and n_bytes >= self.max_bytes:
                break
            n_docs += 1
            n_bytes += len(doc.text.encode("utf-8", "surrogatepass"))
            self.stat_update("records_read")
            self.stat_update("bytes_read", value=len(doc.text))
            yield doc


class TextQualityFilter(PipelineStep):
    """Drops empty, oversized and machine-generated texts (`dropped_<reason>` counters)."""

    name = "text quality"
    type = "🔻 - FILTER"

    def __init__(self, max_bytes: int = 1_000_000):
        super().__init__()
        self.max_bytes = max_bytes

    def reason(self, text: str) -> str | None:
        if not text or text.isspace():
            return "empty"
        if len(text) > self.max_bytes:  # chars <= bytes, so this is a cheap lower bound
            return "oversized"
        if _GENERATED.search(text, 0, _GENERATED_HEAD_CHARS):
            return "generated"
        if max(map(len, text.splitlines()), default=0) > _MAX_LINE_CHARS:
            return "generated"
        return None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        for doc in data:
            reason = self.reason(doc.text)
            if reason is not None:
                self.stat_update(f"dropped_{reason}")
                continue
            # Keep only what later steps need: a record's own fields (numpy arrays, timestamps)
            # need not survive the JSONL hand-off between datatrove runs.
            path = doc.metadata.get("path") or doc.metadata.get("file_path")
            doc.metadata = {"path": str(path), "text_sha256": text_sha256(doc.text)}
            self.stat_update("kept")
            yield doc


class ExactDedup(PipelineStep):
    """Keeps the first document of each exact text (sha256); counts `exact_duplicates_removed`."""

    name = "exact dedup"
    type = "🫂 - DEDUP"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        seen: set[str] = set()
        for doc in data:
            digest = doc.metadata["text_sha256"]
            if digest in seen:
                self.stat_update("exact_duplicates_removed")
                continue
            seen.add(digest)
            yield doc


class MinHashDedup(PipelineStep):
    """Keeps the first of each near-duplicate group (MinHash over word n-grams, LSH bands)."""

    name = "minhash dedup"
    type = "🫂 - DEDUP"

    def __init__(self, threshold: float, ngram: int, num_perm: int, bands: int, seed: int = 0):
        super().__init__()
        self.params = dict(threshold=threshold, ngram=ngram, num_perm=num_perm, bands=bands)
        self.seed = seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        index = MinHashIndex(**self.params, seed=self.seed)
        for doc in data:
            with self.track_time():
                kept = index.add(doc.text)
            if not kept:
                self.stat_update("near_duplicates_removed")
                continue
            yield doc


class HeldoutSplit(PipelineStep):
    """Tags `metadata["split"]` ("train"|"heldout") from the content hash, before any budget cut."""

    name = "held-out split"
    type = "🔀 - SPLIT"

    def __init__(self, fraction: float, seed: int = 0):
        super().__init__()
        self.fraction = fraction
        self.seed = seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        for doc in data:
            digest = doc.metadata["text_sha256"]
            heldout = seeded_unit(self.seed, "split", digest) < self.fraction
            doc.metadata["split"] = "heldout" if heldout else "train"
            doc.metadata["order_key"] = seeded_unit(self.seed, "order", digest)
            self.stat_update(f"{doc.metadata['split']}_documents")
            yield doc


class BudgetOrder(PipelineStep):
    """Sorts the stream by its seeded order key and records the order in a Parquet file.

    Budgets are prefixes of this order, which is what makes them nested.
    """

    name = "budget order"
    type = "🔢 - ORDER"

    def __init__(self, record_path: Path):
        super().__init__()
        self.record_path = Path(record_path)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        import pyarrow as pa
        import pyarrow.parquet as pq

        docs = sorted(data, key=lambda d: (d.metadata["order_key"], d.metadata["text_sha256"]))
        table = pa.table(
            {
                "position": pa.array(range(len(docs)), pa.int64()),
                "doc_id": [d.id for d in docs],
                "text_sha256": [d.metadata["text_sha256"] for d in docs],
                "n_chars": pa.array([len(d.text) for d in docs], pa.int64()),
            }
        )
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, self.record_path)
        self.stat_update("ordered", value=len(docs))
        yield from docs
