"""`build_budgets`: nested unique-token budgets, content-addressed by spec hash, built atomically.

Layout under `root/<spec_hash>/` (docs/design.md): tokenizer.json, heldout/ (val token files
shared by every budget), eval_mc.parquet, budget_<N>/ (train.ds, train.ds.index, manifest.json),
documents.parquet (per-document audit: hash, split, tokens, smallest budget holding it).

Atomicity: everything is written into `root/.tmp-<spec_hash>-<rand>/` and renamed to
`root/<spec_hash>` only after the COMPLETE marker is written, so a crash leaves only a temp dir
that no reader trusts.

One builder per spec: the build holds an OS file lock, `root/.lock-<spec_hash>` (`filelock`),
from its check for a finished build to the rename. A second builder (another process, or another
node on the shared volume) waits for it and then loads what it built. Temp dirs of the spec are
deleted only while holding the lock, when no live builder can own them; the lock dies with its
process, so a crashed builder's temp dir goes at the next build. (Process ids, used before, are
per host: a builder on one node took another node's live build for a crashed one.)
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from formats.budget import budget_dir
from pipeline.errors import PipelineError
from pipeline.manifest import MANIFEST_NAME, BudgetManifest, load_manifest, write_manifest
from pipeline.spec import BudgetSpec
from pipeline.tokens import read_doc_ends, read_tokens

COMPLETE_MARKER = "COMPLETE"
SPEC_NAME = "spec.json"
_TRAIN_FILE = "train.ds"

Progress = Callable[[str], None]


def cut_nested(doc_ends: np.ndarray, sizes: Sequence[int]) -> list[int]:
    """Documents per budget: the fewest prefix documents holding >= size tokens.

    So each budget overshoots its request by less than its last document, and every smaller
    budget is a prefix of every larger one.
    """
    available = int(doc_ends[-1]) if len(doc_ends) else 0
    if max(sizes) > available:
        raise PipelineError(
            f"corpus too small: {available} unique training tokens available after cleaning, "
            f"dedup and the held-out split, but the largest requested budget is {max(sizes)}"
        )
    return [int(np.searchsorted(doc_ends, s, side="left")) + 1 for s in sizes]


def _complete(spec_dir: Path) -> bool:
    return (spec_dir / COMPLETE_MARKER).is_file()


def _load_built(spec_dir: Path, spec: BudgetSpec) -> list[BudgetManifest]:
    return [load_manifest(budget_dir(spec_dir, n) / MANIFEST_NAME) for n in spec.sizes]


def _remove_stale_temp_dirs(root: Path, spec_hash: str) -> None:
    """Temp dirs of this spec: called with the spec's lock held, so no live builder owns one
    (they are a crashed builder's leftovers, never trusted)."""
    for tmp in root.glob(f".tmp-{spec_hash}-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _spec_lock(root: Path, spec_hash: str, say: Progress) -> FileLock:
    """The spec's build lock, acquired (waits for another builder, saying so once)."""
    lock = FileLock(root / f".lock-{spec_hash}")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"waiting for another builder of spec {spec_hash} ({lock.lock_file})")
        lock.acquire()
    return lock


def build_budgets(
    spec: BudgetSpec, root: Path | None = None, progress: Progress | None = None
) -> list[BudgetManifest]:
    """Build (or load, if already built) every budget of `spec`; manifests sorted by size."""
    from pipeline.settings import StudySettings

    say = progress or (lambda _msg: None)
    root = Path(root if root is not None else StudySettings().budgets_dir).resolve()
    spec_hash = spec.spec_hash
    final = root / spec_hash
    if _complete(final):
        say(f"spec {spec_hash} already built at {final}; skipping")
        return _load_built(final, spec)
    check_inputs(spec)
    root.mkdir(parents=True, exist_ok=True)
    lock = _spec_lock(root, spec_hash, say)
    try:
        if _complete(final):  # built by the builder we waited for
            say(f"spec {spec_hash} built by another process at {final}; using it")
            return _load_built(final, spec)
        if final.exists():  # no marker: not ours to trust (e.g. copied by hand); rebuild
            shutil.rmtree(final)
        _remove_stale_temp_dirs(root, spec_hash)
        _build_locked(spec, root / f".tmp-{spec_hash}-{secrets.token_hex(4)}", final, say)
    finally:
        lock.release()
    say(f"built spec {spec_hash} at {final}")
    return _load_built(final, spec)


def _build_locked(spec: BudgetSpec, tmp: Path, final: Path, say: Progress) -> None:
    """Build into ``tmp``, mark it complete and rename it to ``final`` (the lock is held)."""
    tmp.mkdir()
    try:
        _build_into(spec, tmp, final, say)
        (tmp / COMPLETE_MARKER).write_text(datetime.now(UTC).isoformat())
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_inputs(spec: BudgetSpec) -> None:
    """The corpus path and a user tokenizer exist and fit the spec (cheap; no data is read)."""
    from pipeline.phases import check_source
    from pipeline.tokenizer import check_user_tokenizer

    check_source(spec.source)
    if spec.tokenizer.path is not None:
        check_user_tokenizer(Path(spec.tokenizer.path), spec.tokenizer.eos_token)


def _source_and_filter_stats(
    spec: BudgetSpec, counters: dict[str, float], bad_records: dict | None = None
) -> tuple[dict, dict]:
    c = {k: int(v) for k, v in counters.items()}
    skipped: dict[str, int] = {}
    for key, value in c.items():
        if key.startswith(("skipped_", "dropped_")):  # reader and filter may share a reason
            reason = key.split("_", 1)[1]
            skipped[reason] = skipped.get(reason, 0) + value
    source_stats = {
        "kind": spec.source.kind,
        "path": str(spec.source.path) if spec.source.path else None,
        "files_listed": c.get("files_listed"),
        "documents_read": c.get("files_read", c.get("records_read", 0)),
        "bytes_read": c.get("bytes_read", 0),
        "skipped": skipped,
        "on_bad_record": spec.source.bad_record_policy,
        # reason -> {count, example, files: {path: {count, lines (first 5; rows for parquet)}}}
        "bad_records": bad_records or {},
    }
    filter_stats = {
        "documents_kept_by_quality": c.get("kept", 0),
        "exact_duplicates_removed": c.get("exact_duplicates_removed", 0),
        "near_duplicates_removed": c.get("near_duplicates_removed", 0),
        "train_documents": c.get("train_documents", 0),
        "heldout_documents": c.get("heldout_documents", 0),
    }
    return source_stats, filter_stats


def _prepare_tokenizer(spec: BudgetSpec, tmp: Path, say: Progress) -> Path:
    from pipeline.phases import iter_texts
    from pipeline.tokenizer import install_user_tokenizer, train_bpe

    tok_path = tmp / "tokenizer.json"
    t = spec.tokenizer
    if t.path is not None:
        install_user_tokenizer(Path(t.path), t.eos_token, tok_path)
    else:
        say(f"training byte-level BPE (vocab {t.vocab_size}) on the training side")
        train_bpe(iter_texts(tmp, "train", t.train_max_bytes), t.vocab_size, t.eos_token, tok_path)
    return tok_path


def _build_into(spec: BudgetSpec, tmp: Path, final: Path, say: Progress) -> None:
    from tokenizers import Tokenizer

    from pipeline.evalset import build_eval_items, write_eval_set
    from pipeline.phases import clean_and_split, tokenize_split
    from pipeline.tokenizer import file_sha256, token_dtype_for

    say(f"reading and cleaning the {spec.source.kind} corpus")
    counters, bad_records = clean_and_split(spec, tmp)
    source_stats, filter_stats = _source_and_filter_stats(spec, counters, bad_records)
    if filter_stats["train_documents"] + filter_stats["heldout_documents"] == 0:
        first = [entry["example"] for entry in bad_records.values()]
        raise PipelineError(
            f"empty corpus: no documents left from source {spec.source.kind} "
            f"{spec.source.path or ''} (read {source_stats['documents_read']}, "
            f"skipped {source_stats['skipped']})" + (f"; first: {first[0]}" if first else "")
        )
    for split in ("train", "heldout"):
        if filter_stats[f"{split}_documents"] == 0:
            raise PipelineError(
                f"the {split} split is empty ({filter_stats['train_documents']} train, "
                f"{filter_stats['heldout_documents']} held-out documents); adjust heldout_fraction"
            )
    tok_path = _prepare_tokenizer(spec, tmp, say)
    tok = Tokenizer.from_file(str(tok_path))
    vocab_size = tok.get_vocab_size()
    eos_id = tok.token_to_id(spec.tokenizer.eos_token) if spec.tokenizer.eos_token else None
    dtype = token_dtype_for(vocab_size)

    say("tokenizing the training pool and the held-out split with DocumentTokenizer")
    pool_file, _ = tokenize_split(tmp, "train", tok_path, spec.tokenizer.eos_token, spec.seed)
    val_file, _ = tokenize_split(tmp, "heldout", tok_path, spec.tokenizer.eos_token, spec.seed)
    pool_ends = read_doc_ends(pool_file)
    filter_stats["train_pool_tokens"] = int(pool_ends[-1]) if len(pool_ends) else 0
    n_docs = cut_nested(pool_ends, spec.sizes)

    val_tokens = read_tokens([val_file], dtype)
    val_ends = read_doc_ends(val_file)
    items = build_eval_items(val_tokens, val_ends, eos_id, spec.eval_set, spec.seed)
    n_items = write_eval_set(items, tok_path, tmp / "eval_mc.parquet")
    filter_stats["eval_mc_items"] = n_items
    del val_tokens  # release the memmap before the dir is renamed

    created_at = datetime.now(UTC).isoformat()
    tok_sha = file_sha256(tok_path)
    itemsize = np.dtype(dtype).itemsize
    for size, k in zip(spec.sizes, n_docs, strict=True):
        bdir = budget_dir(tmp, size)
        bdir.mkdir()
        n_tokens = int(pool_ends[k - 1])
        with open(pool_file, "rb") as src, open(bdir / _TRAIN_FILE, "wb") as dst:
            dst.write(src.read(n_tokens * itemsize))
        pool_ends[:k].astype("<u8").tofile(bdir / f"{_TRAIN_FILE}.index")
        manifest = BudgetManifest(
            budget_id=f"{spec.spec_hash}-{size}",
            spec_hash=spec.spec_hash,
            requested_tokens=size,
            unique_tokens=n_tokens,
            n_documents=k,
            token_dtype=dtype,
            vocab_size=vocab_size,
            eos_id=eos_id,
            tokenizer_path=str(final / "tokenizer.json"),
            tokenizer_sha256=tok_sha,
            train_files=[str(final / bdir.name / _TRAIN_FILE)],
            val_files=[str(final / "heldout" / val_file.name)],
            val_tokens=int(val_ends[-1]),
            eval_mc_path=str(final / "eval_mc.parquet"),
            content_sha256=file_sha256(bdir / _TRAIN_FILE),
            seed=spec.seed,
            source_stats=source_stats,
            filter_stats=filter_stats,
            created_at=created_at,
        )
        write_manifest(manifest, bdir / MANIFEST_NAME)
        say(f"budget {size}: {n_tokens} tokens in {k} documents")
    _write_documents_table(tmp, pool_ends, val_ends, spec.sizes, n_docs)
    (tmp / SPEC_NAME).write_text(spec.model_dump_json(indent=2))
    # The cleaned text and the uncut pool are intermediates; the budgets hold what training needs.
    shutil.rmtree(tmp / "docs")
    shutil.rmtree(tmp / "pool")


def _write_documents_table(
    tmp: Path,
    pool_ends: np.ndarray,
    val_ends: np.ndarray,
    sizes: Sequence[int],
    n_docs: Sequence[int],
) -> None:
    """documents.parquet: one row per kept document, in budget order (train) then held-out."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = []
    for split, ends in (("train", pool_ends), ("heldout", val_ends)):
        order = pq.read_table(tmp / f"order_{split}.parquet")
        n_tokens = np.diff(np.concatenate([[0], ends.astype(np.int64)]))
        smallest = np.full(len(n_tokens), -1, dtype=np.int64)
        if split == "train":
            for size, k in sorted(zip(sizes, n_docs, strict=True), reverse=True):
                smallest[:k] = size
        order = order.append_column("split", pa.array([split] * len(n_tokens)))
        order = order.append_column("n_tokens", pa.array(n_tokens, pa.int64()))
        budget = pa.array(smallest, pa.int64())
        order = order.append_column(
            "smallest_budget", pc.if_else(pc.equal(budget, -1), None, budget)
        )
        parts.append(order)
        (tmp / f"order_{split}.parquet").unlink()
    pq.write_table(pa.concat_tables(parts), tmp / "documents.parquet")
