"""Record readers on hand-made bad files: every unreadable record is counted or fails the build."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pipeline_corpora import make_texts, tree_spec, write_tree

from pipeline import BudgetSpec, PipelineError, build_budgets
from pipeline.readers import (
    JsonlRecordReader,
    ParquetRecordReader,
    format_bad_records,
    read_tally,
)
from pipeline.steps import SourceTreeReader


def _counters(step) -> dict[str, int]:
    return {k: int(v.total) for k, v in step.stats.stats.items()}


def _jsonl_with_latin1_line(path: Path, n: int = 200, bad_line: int = 101) -> list[str]:
    """`n` good records; line `bad_line` (1-based) holds a Latin-1 encoded record."""
    texts = make_texts(n, seed=5)
    with open(path, "wb") as f:
        for i, text in enumerate(texts, start=1):
            record = json.dumps({"text": ("caf\u00e9 " if i == bad_line else "") + text})
            encoding = "latin-1" if i == bad_line else "utf-8"
            f.write(json.dumps(json.loads(record), ensure_ascii=False).encode(encoding) + b"\n")
    return texts


def _jsonl_spec(path: Path, **source) -> BudgetSpec:
    return BudgetSpec.model_validate(
        {
            "source": {"kind": "jsonl", "path": str(path), **source},
            "sizes": (3000,),
            "heldout_fraction": 0.2,
            "tokenizer": {"vocab_size": 400},
            "eval_set": {"n_items": 4, "context_tokens": 24, "continuation_tokens": 8},
        }
    )


def test_latin1_line_fails_by_default_naming_file_and_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _jsonl_with_latin1_line(corpus)
    with pytest.raises(PipelineError, match=r"c\.jsonl:101: not UTF-8") as err:
        build_budgets(_jsonl_spec(corpus), root=tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "out").glob("*/COMPLETE"))


def test_latin1_line_skipped_and_counted_with_its_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    _jsonl_with_latin1_line(corpus)
    (m,) = build_budgets(_jsonl_spec(corpus, on_bad_record="skip"), root=tmp_path / "out")
    src = m.source_stats
    assert src["documents_read"] == 199 and src["skipped"] == {"undecodable": 1}
    entry = src["bad_records"]["undecodable"]
    assert entry["count"] == 1
    assert entry["files"] == {str(corpus): {"count": 1, "lines": [101]}}
    assert m.filter_stats["train_documents"] + m.filter_stats["heldout_documents"] == 199


def test_jsonl_reasons_counted_per_file_with_first_lines(tmp_path):
    good = [json.dumps({"text": t}) for t in make_texts(4, seed=2)]
    lines = [
        good[0],
        "{not json",
        "[1, 2]",
        json.dumps({"content": "x", "id": 3}),
        "",  # blank: no record, nothing lost
        json.dumps({"text": None}),
        good[1],
        "{also not json",
        good[2],
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.jsonl").write_text(good[3] + "\n{broken\n")
    tally = tmp_path / "tally.json"
    reader = JsonlRecordReader(str(tmp_path), "*.jsonl", on_bad_record="skip", tally_path=tally)
    docs = list(reader())
    assert len(docs) == 4
    counters = _counters(reader)
    assert counters["skipped_invalid_json"] == 3 and counters["skipped_not_an_object"] == 1
    assert counters["skipped_missing_text_field"] == 1 and counters["skipped_text_not_string"] == 1
    report = read_tally(tally)
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    assert report["invalid_json"]["files"] == {
        a: {"count": 2, "lines": [2, 8]},
        b: {"count": 1, "lines": [2]},
    }
    assert report["missing_text_field"]["files"] == {a: {"count": 1, "lines": [4]}}
    assert "keys found: ['content', 'id']" in report["missing_text_field"]["example"]
    assert report["text_not_string"]["files"][a]["lines"] == [6]


def test_missing_text_field_names_field_and_keys_found(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"content": t, "id": i}) + "\n" for i, t in enumerate(make_texts(20, seed=4))
        )
    )
    with pytest.raises(
        PipelineError, match=r"c\.jsonl:1: no field 'text' \(keys found: \['content'"
    ):
        build_budgets(_jsonl_spec(corpus), root=tmp_path / "out")
    with pytest.raises(PipelineError, match=r"empty corpus.*missing_text_field.*keys found"):
        build_budgets(_jsonl_spec(corpus, on_bad_record="skip"), root=tmp_path / "out")


def test_parquet_null_rows_undecodable_bytes_and_missing_column(tmp_path):
    texts = make_texts(3, seed=6)
    pq.write_table(pa.table({"text": [texts[0], None, texts[1]]}), tmp_path / "a.parquet")
    raw = pa.array([texts[2].encode(), b"caf\xe9"], pa.binary())
    pq.write_table(pa.table({"text": raw}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"body": ["x", "y"]}), tmp_path / "c.parquet")
    tally = tmp_path / "tally.json"
    reader = ParquetRecordReader(str(tmp_path), "*.parquet", on_bad_record="skip", tally_path=tally)
    assert [d.text for d in reader()] == texts[:3]
    report = read_tally(tally)
    assert report["text_not_string"]["files"][str(tmp_path / "a.parquet")]["lines"] == [2]
    assert report["undecodable"]["files"][str(tmp_path / "b.parquet")]["lines"] == [2]
    assert report["missing_text_field"]["count"] == 2  # every row of c.parquet
    assert "columns found: ['body']" in report["missing_text_field"]["example"]
    strict = ParquetRecordReader(str(tmp_path), "a.parquet", on_bad_record="fail")
    with pytest.raises(PipelineError, match=r"a\.parquet:2: column 'text' is null"):
        list(strict())


def test_source_tree_undecodable_file_line_counted_or_fatal(tmp_path):
    write_tree(tmp_path, make_texts(6))
    (tmp_path / "late.txt").write_bytes(b"ok\nstill ok\n\xff bad\n")
    tally = tmp_path / "tally.json"
    reader = SourceTreeReader([tmp_path], glob="*.txt", max_file_bytes=10_000, tally_path=tally)
    list(reader())
    report = read_tally(tally)
    assert report["undecodable"]["count"] == 2
    assert report["undecodable"]["files"][str(tmp_path / "late.txt")]["lines"] == [3]
    assert report["binary"]["files"] == {str(tmp_path / "binary.txt"): {"count": 1, "lines": []}}
    assert report["oversized"]["count"] == 1
    strict = SourceTreeReader([tmp_path], glob="late.txt", on_bad_record="fail")
    with pytest.raises(PipelineError, match=r"late\.txt:3: not UTF-8"):
        list(strict())


def test_tree_build_lists_skipped_files_in_manifest(tmp_path):
    corpus = tmp_path / "c"
    write_tree(corpus, make_texts(40, seed=8))
    (m, _) = build_budgets(tree_spec(corpus, sizes=(1000, 2000)), root=tmp_path / "out")
    bad = m.source_stats["bad_records"]
    assert m.source_stats["on_bad_record"] == "skip"
    assert bad["undecodable"]["files"] == {str(corpus / "latin1.txt"): {"count": 1, "lines": [1]}}
    assert set(bad) == {"undecodable", "binary", "oversized"}
    assert f"skipped 1 undecodable: {corpus / 'latin1.txt'} lines [1]" in format_bad_records(bad)


def test_policy_defaults_by_kind_and_not_hashed(tmp_path):
    assert _jsonl_spec(tmp_path).source.bad_record_policy == "fail"
    assert tree_spec(tmp_path).source.bad_record_policy == "skip"
    skip = _jsonl_spec(tmp_path, on_bad_record="skip")
    assert skip.source.bad_record_policy == "skip"
    # A build either fails or writes exactly the bytes 'skip' writes: the same budget directory.
    assert skip.spec_hash == _jsonl_spec(tmp_path).spec_hash
    with pytest.raises(ValueError, match="on_bad_record"):
        _jsonl_spec(tmp_path, on_bad_record="ignore")
