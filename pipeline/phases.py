"""The datatrove runs of a build: clean + split, then tokenize train pool and held-out docs.

Every run is a `LocalPipelineExecutor` with one task (one task is fastest here: `tokenizers`
already uses every core) logging under `<build>/logs/<phase>`.
"""

from __future__ import annotations

import contextlib
import io
import sysconfig
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.spec import BudgetSpec, SourceSpec

DOCS_DIR = "docs"
POOL_DIR = "pool"
HELDOUT_DIR = "heldout"
BAD_RECORDS_NAME = "bad_records.json"


def stdlib_roots(include_site_packages: bool) -> tuple[list[Path], tuple[str, ...]]:
    """This interpreter's stdlib (+ purelib); site-packages inside the stdlib tree excluded."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"])]
    exclude = ("__pycache__", "site-packages", "dist-packages")
    if include_site_packages:
        roots.append(Path(paths["purelib"]))
        exclude = ("__pycache__",)
    return roots, exclude


def check_source(source: SourceSpec) -> None:
    """Fail early, naming the path, before any work is done."""
    if source.kind == "stdlib":
        return
    path = Path(source.path)
    if not path.exists():
        raise PipelineError(f"source.path does not exist: {path}")
    if source.kind == "files" and not path.is_dir():
        raise PipelineError(f"source.path must be a directory for kind='files': {path}")


def _reader_steps(source: SourceSpec, seed: int, tally_path: Path | None = None) -> list:
    from pipeline.readers import JsonlRecordReader, ParquetRecordReader
    from pipeline.steps import SourceCap, SourceTreeReader

    policy = source.bad_record_policy

    if source.kind in ("stdlib", "files"):
        if source.kind == "stdlib":
            roots, exclude = stdlib_roots(source.include_site_packages)
        else:
            roots, exclude = [Path(source.path)], ("__pycache__", ".git")
        return [
            SourceTreeReader(
                roots,
                glob=source.glob or "**/*.py",
                exclude_parts=exclude,
                max_files=source.max_files,
                max_bytes=source.max_bytes,
                max_file_bytes=source.max_file_bytes,
                seed=seed,
                on_bad_record=policy,
                tally_path=tally_path,
            )
        ]
    path = Path(source.path)
    folder, pattern = (path, source.glob) if path.is_dir() else (path.parent, path.name)
    # Parquet: only the text column is read (others could be large or not JSON-serialisable).
    reader_cls, default_glob = (
        (JsonlRecordReader, "**/*.jsonl*")
        if source.kind == "jsonl"
        else (ParquetRecordReader, "**/*.parquet")
    )
    reader = reader_cls(
        str(folder),
        glob_pattern=pattern or default_glob,
        text_key=source.text_key,
        on_bad_record=policy,
        tally_path=tally_path,
    )
    return [reader, SourceCap(max_docs=source.max_files, max_bytes=source.max_bytes)]


def _run(pipeline: list, logging_dir: Path) -> dict[str, dict[str, float]]:
    """Run one task in-process; return {step name: {counter: total}}."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.utils.logging import setup_default_logger

    executor = LocalPipelineExecutor(
        pipeline=pipeline, tasks=1, workers=1, logging_dir=str(logging_dir)
    )
    # datatrove logs every step twice to stderr; the full log stays in logging_dir/logs/.
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            stats = executor.run()
    finally:
        setup_default_logger()  # its handler captured the redirected stream; point it back
    out: dict[str, dict[str, float]] = {}
    for step_stats in stats.stats:
        counters = {k: v.total for k, v in step_stats.stats.items()}
        out.setdefault(step_stats.name, {}).update(counters)
    return out


def clean_and_split(spec: BudgetSpec, build_dir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """Read, filter, dedup and split; writes docs/{train,heldout}_00000.jsonl.

    Returns (counters, bad records by reason: count, files with their first line numbers).
    """
    from datatrove.pipeline.writers import JsonlWriter

    from pipeline.readers import read_tally
    from pipeline.steps import ExactDedup, HeldoutSplit, MinHashDedup, TextQualityFilter

    d = spec.dedup
    tally_path = build_dir / "logs" / "clean" / BAD_RECORDS_NAME
    steps = _reader_steps(spec.source, spec.seed, tally_path)
    steps.append(TextQualityFilter(max_bytes=spec.source.max_file_bytes))
    if d.exact:
        steps.append(ExactDedup())
    if d.near:
        steps.append(MinHashDedup(d.threshold, d.ngram, d.num_perm, d.bands, seed=spec.seed))
    steps.append(HeldoutSplit(spec.heldout_fraction, seed=spec.seed))
    steps.append(
        JsonlWriter(
            str(build_dir / DOCS_DIR), output_filename="${split}_${rank}.jsonl", compression=None
        )
    )
    per_step = _run(steps, build_dir / "logs" / "clean")
    flat: dict[str, float] = {}
    for counters in per_step.values():
        flat.update(counters)
    return flat, read_tally(tally_path)


def iter_texts(build_dir: Path, split: str, max_chars: int | None = None):
    """Texts of one split in written order, stopping after `max_chars` characters."""
    import orjson

    total = 0
    for path in sorted((build_dir / DOCS_DIR).glob(f"{split}_*.jsonl")):
        with open(path, "rb") as f:
            for line in f:
                if max_chars is not None and total >= max_chars:
                    return
                text = orjson.loads(line)["text"]
                total += len(text)
                yield text


def tokenize_split(
    build_dir: Path, split: str, tokenizer_path: Path, eos_token: str | None, seed: int
) -> tuple[Path, dict[str, Any]]:
    """Order a split by its seeded key and tokenize it with DocumentTokenizer (no shuffling)."""
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    from pipeline.steps import BudgetOrder

    out_dir = build_dir / (POOL_DIR if split == "train" else HELDOUT_DIR)
    name = "pool" if split == "train" else "val"
    pipeline = [
        JsonlReader(str(build_dir / DOCS_DIR), glob_pattern=f"{split}_*.jsonl"),
        BudgetOrder(build_dir / f"order_{split}.parquet"),
        DocumentTokenizer(
            str(out_dir),
            tokenizer_name_or_path=str(tokenizer_path),
            eos_token=eos_token,
            save_filename=name,
            shuffle_documents=False,
            seed=seed,
        ),
    ]
    stats = _run(pipeline, build_dir / "logs" / f"tokenize_{split}")
    token_file = out_dir / f"{name}_00000_unshuffled.ds"
    if not token_file.is_file():
        raise PipelineError(f"tokenizing the {split} split wrote no tokens (no documents?)")
    return token_file, stats
