"""Other sources through datatrove's readers: JSONL, Parquet and a slice of the stdlib."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from pipeline_corpora import make_texts

from pipeline import BudgetSpec, build_budgets, read_tokens

_SMALL = {
    "sizes": (2000, 5000),
    "heldout_fraction": 0.25,
    "tokenizer": {"vocab_size": 400},
    "eval_set": {"n_items": 4, "n_distractors": 2, "context_tokens": 16, "continuation_tokens": 8},
}


def test_jsonl_with_text_key_and_cap(tmp_path):
    path = tmp_path / "corpus.jsonl"
    texts = make_texts(60, seed=11)
    path.write_text("".join(json.dumps({"content": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    spec = BudgetSpec(
        source={"kind": "jsonl", "path": str(path), "text_key": "content", "max_files": 50},
        **_SMALL,
    )
    small, large = build_budgets(spec, root=tmp_path / "out")
    assert large.source_stats["documents_read"] == 50
    assert len(read_tokens(large.train_files, large.token_dtype)) == large.unique_tokens


def test_parquet_directory(tmp_path):
    folder = tmp_path / "pq"
    folder.mkdir()
    texts = make_texts(60, seed=12)
    tags = [[i, i + 1] for i in range(30)]  # a list column the pipeline must not choke on
    pq.write_table(pa.table({"text": texts[:30], "tags": tags}), folder / "a.parquet")
    pq.write_table(pa.table({"text": texts[30:]}), folder / "b.parquet")
    spec = BudgetSpec(source={"kind": "parquet", "path": str(folder)}, **_SMALL)
    manifests = build_budgets(spec, root=tmp_path / "out")
    assert manifests[0].source_stats["documents_read"] == 60
    assert (
        manifests[0].filter_stats["train_documents"]
        > manifests[0].filter_stats["heldout_documents"]
    )


def test_stdlib_slice(tmp_path):
    spec = BudgetSpec(
        source={"kind": "stdlib", "max_bytes": 250_000},
        **{**_SMALL, "sizes": (5000, 20000), "tokenizer": {"vocab_size": 512}},
    )
    small, large = build_budgets(spec, root=tmp_path)
    assert large.source_stats["bytes_read"] >= 250_000
    assert large.source_stats["files_listed"] > 500  # the whole stdlib was listed, a slice read
    assert small.unique_tokens >= 5000 and large.unique_tokens >= 20000
    assert large.vocab_size <= 512
