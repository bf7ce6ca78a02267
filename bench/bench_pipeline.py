"""Whole budget build vs raw `tokenizers` batch encoding of the same text, in one run.

    PYTHONPATH=. .venv/bin/python bench/bench_pipeline.py [--max-bytes N] [--sizes 1000000,4000000]

The build (read + clean + exact/MinHash dedup + split + BPE training + DocumentTokenizer of the
train pool and held-out docs + budget cut + eval set) runs into a fresh temp root; then the
cleaned documents it kept (listed in documents.parquet) are re-read and encoded with the same
tokenizer.json by `Tokenizer.encode_batch`. Ratio = build seconds / raw-encode seconds (target
<= 2).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def _kept_texts(spec_dir: Path, include_site_packages: bool) -> list[str]:
    from pipeline.phases import stdlib_roots

    roots, _ = stdlib_roots(include_site_packages)
    docs = pq.read_table(spec_dir / "documents.parquet", columns=["doc_id"]).column(0)
    texts = []
    for doc_id in docs.to_pylist():
        root_index, rel = doc_id.split(":", 1)
        texts.append((roots[int(root_index)] / rel).read_text(encoding="utf-8"))
    return texts


def main() -> int:
    from pipeline import BudgetSpec, build_budgets
    from pipeline.settings import apply_offline_defaults

    apply_offline_defaults()
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-bytes", type=int, default=None, help="cap the stdlib (default: all)")
    parser.add_argument("--sizes", default="1000000,4000000")
    parser.add_argument("--vocab", type=int, default=2048)
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    spec = BudgetSpec(
        source={"kind": "stdlib", "max_bytes": args.max_bytes},
        sizes=sizes,
        tokenizer={"vocab_size": args.vocab},
    )
    with tempfile.TemporaryDirectory() as tmp:
        marks: list[tuple[float, str]] = []
        t0 = time.perf_counter()
        manifests = build_budgets(
            spec, root=Path(tmp), progress=lambda msg: marks.append((time.perf_counter(), msg))
        )
        build_end = time.perf_counter()
        build_s = build_end - t0
        m = manifests[-1]
        spec_dir = Path(m.tokenizer_path).parent
        pipeline_tokens = m.filter_stats["train_pool_tokens"] + m.val_tokens

        from tokenizers import Tokenizer

        texts = _kept_texts(spec_dir, include_site_packages=False)
        tok = Tokenizer.from_file(m.tokenizer_path)
        t_raw = time.perf_counter()
        encoded = tok.encode_batch(texts)
        raw_s = time.perf_counter() - t_raw
        raw_tokens = sum(len(e.ids) for e in encoded)

    n_bytes = sum(len(t.encode()) for t in texts)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {sys.version.split()[0]}")
    print(
        f"stdlib read: {m.source_stats['documents_read']} files, "
        f"{m.source_stats['bytes_read']:,} bytes; "
        f"skipped {m.source_stats['skipped']}"
    )
    print(
        f"kept after cleaning/dedup: {len(texts)} docs, {n_bytes:,} bytes; filters {m.filter_stats}"
    )
    print(
        f"stdlib corpus size: {pipeline_tokens:,} tokens incl. one EOS per doc "
        f"({raw_tokens:,} without EOS), vocab {m.vocab_size}"
    )
    for b in manifests:
        print(f"budget {b.requested_tokens:,}: {b.unique_tokens:,} tokens, {b.n_documents} docs")
    print("build phases (seconds until the next progress message):")
    stamps = [t for t, _ in marks] + [build_end]
    for (t, msg), t_next in zip(marks, stamps[1:], strict=True):
        print(f"  {t_next - t:6.2f}  {msg}")
    print(f"whole budget build: {build_s:.2f} s = {pipeline_tokens / build_s:,.0f} tokens/s")
    print(f"raw encode_batch:   {raw_s:.2f} s = {raw_tokens / raw_s:,.0f} tokens/s")
    print(f"ratio build/raw: {build_s / raw_s:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
