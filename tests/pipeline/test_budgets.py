"""Budgets built by real datatrove runs: nesting, exact counts, no leakage, caching, atomicity."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from filelock import FileLock
from pipeline_corpora import make_texts, tree_spec, write_tree
from tokenizers import Tokenizer

import pipeline.evalset
from pipeline import PipelineError, build_budgets, load_manifest, read_tokens
from pipeline.budgets import COMPLETE_MARKER, cut_nested
from pipeline.tokens import read_doc_ends


def decoded_docs(token_file: str, tok: Tokenizer, eos_id: int | None) -> list[str]:
    tokens = read_tokens([token_file], "uint16")
    ends = read_doc_ends(token_file).tolist()
    docs, start = [], 0
    for end in ends:
        ids = tokens[start:end].tolist()
        assert ids[-1] == eos_id  # every document ends with EOS
        docs.append(tok.decode(ids[:-1], skip_special_tokens=False))
        start = end
    return docs


def test_budgets_are_nested_prefixes(built):
    _, _, (small, large) = built
    a = Path(small.train_files[0]).read_bytes()
    b = Path(large.train_files[0]).read_bytes()
    assert len(a) < len(b) and b.startswith(a)
    ends_small = read_doc_ends(small.train_files[0])
    ends_large = read_doc_ends(large.train_files[0])
    np.testing.assert_array_equal(ends_large[: len(ends_small)], ends_small)


def test_counts_exact_and_within_one_document(built):
    _, _, manifests = built
    for m in manifests:
        tokens = read_tokens(m.train_files, m.token_dtype)
        ends = read_doc_ends(m.train_files[0])
        assert len(tokens) == m.unique_tokens == int(ends[-1])
        assert len(ends) == m.n_documents
        last_doc = int(ends[-1] - (ends[-2] if len(ends) > 1 else 0))
        assert m.requested_tokens <= m.unique_tokens < m.requested_tokens + last_doc
        assert int(tokens.max()) < m.vocab_size


def test_shared_heldout_and_manifest_contract(built):
    spec, root, (small, large) = built
    assert small.val_files == large.val_files and small.eval_mc_path == large.eval_mc_path
    assert small.val_tokens == len(read_tokens(small.val_files, small.token_dtype)) > 0
    assert small.spec_hash == spec.spec_hash and Path(small.train_files[0]).is_relative_to(root)
    assert small.token_dtype == "uint16" and small.eos_id is not None
    reloaded = load_manifest(Path(large.train_files[0]).parent / "manifest.json")
    assert reloaded == large
    assert (root / spec.spec_hash / COMPLETE_MARKER).is_file()


def test_no_heldout_document_or_duplicate_in_any_budget(built, tree_corpus):
    _, _, manifests = built
    m = manifests[-1]
    tok = Tokenizer.from_file(m.tokenizer_path)
    heldout = set(decoded_docs(m.val_files[0], tok, m.eos_id))
    corpus = {p.read_text() for p in tree_corpus.glob("doc_*.txt")}
    assert heldout and heldout <= corpus  # decoding round-trips to the source text
    for manifest in manifests:
        in_budget = decoded_docs(manifest.train_files[0], tok, manifest.eos_id)
        assert len(in_budget) == len(set(in_budget))  # exact duplicates were removed
        assert not heldout.intersection(in_budget)
    # the audit table agrees: held-out hashes never carry a budget
    docs = pq.read_table(Path(m.val_files[0]).parents[1] / "documents.parquet").to_pandas()
    assert docs.loc[docs.split == "heldout", "smallest_budget"].isna().all()
    assert not set(docs.text_sha256[docs.split == "heldout"]) & set(
        docs.text_sha256[docs.smallest_budget.notna()]
    )


def test_skip_reasons_and_dedup_counted(built):
    _, _, manifests = built
    src, flt = manifests[0].source_stats, manifests[0].filter_stats
    assert src["skipped"] == {
        "oversized": 1,
        "binary": 1,
        "undecodable": 1,
        "empty": 1,
        "generated": 1,
    }
    assert flt["exact_duplicates_removed"] == 2
    assert flt["near_duplicates_removed"] == 1
    assert flt["train_documents"] + flt["heldout_documents"] == 80


def test_eval_set_is_length_matched_from_heldout(built):
    _, _, (m, _) = built
    table = pq.read_table(m.eval_mc_path)
    assert table.column_names == [
        "item_id",
        "context",
        "choices",
        "label",
        "context_text",
        "choices_text",
    ]
    df = table.to_pandas()
    val = read_tokens(m.val_files, m.token_dtype).tolist()
    assert 4 <= len(df) <= 8
    for row in df.itertuples():
        assert len(row.context) == 24 and len(row.choices) == 4
        assert all(len(c) == 8 for c in row.choices)
        true = list(row.context) + list(row.choices[row.label])
        # the true continuation follows the context somewhere in the held-out tokens
        assert any(val[i : i + 32] == true for i in range(len(val) - 31))


def test_determinism_and_rebuild_skipped(built, tree_corpus, tmp_path):
    spec, root, first = built
    again = build_budgets(spec, root=root)  # same spec, same root: loaded, not rebuilt
    assert [m.created_at for m in again] == [m.created_at for m in first]
    other = build_budgets(spec, root=tmp_path)  # fresh root: rebuilt, identical bytes
    assert [m.content_sha256 for m in other] == [m.content_sha256 for m in first]
    assert other[0].tokenizer_sha256 == first[0].tokenizer_sha256
    assert [m.unique_tokens for m in other] == [m.unique_tokens for m in first]


def test_changed_spec_builds_new_budget(built, tree_corpus):
    spec, root, first = built
    changed = tree_spec(tree_corpus, seed=8)
    assert changed.spec_hash != spec.spec_hash
    second = build_budgets(changed, root=root)
    assert (root / changed.spec_hash).is_dir() and (root / spec.spec_hash).is_dir()
    assert second[0].content_sha256 != first[0].content_sha256


def test_crash_leaves_nothing_trusted(tree_corpus, tmp_path, monkeypatch):
    spec = tree_spec(tree_corpus)

    def crash(*_args, **_kwargs):
        raise RuntimeError("simulated crash while writing eval_mc.parquet")

    monkeypatch.setattr(pipeline.evalset, "write_eval_set", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_budgets(spec, root=tmp_path)
    # Neither a final dir nor a temp dir remains (the spec's lock file stays: it is empty).
    assert [p.name for p in tmp_path.iterdir()] == [f".lock-{spec.spec_hash}"]
    monkeypatch.undo()
    # leftovers of a killed builder (dead pid) and an unmarked final dir are never trusted
    stale = tmp_path / f".tmp-{spec.spec_hash}-999999999-dead"
    (stale / "budget_3000").mkdir(parents=True)
    (tmp_path / spec.spec_hash / "budget_3000").mkdir(parents=True)
    (tmp_path / spec.spec_hash / "budget_3000" / "manifest.json").write_text("{}")
    manifests = build_budgets(spec, root=tmp_path)
    assert not stale.exists()
    assert (tmp_path / spec.spec_hash / COMPLETE_MARKER).is_file()
    assert manifests[0].unique_tokens >= 3000


def _build_in_thread(spec, root: Path, said: list[str]) -> tuple[threading.Thread, list]:
    out: list = []

    def build() -> None:
        try:
            out.append(build_budgets(spec, root=root, progress=said.append))
        except BaseException as err:  # surfaced by the test's assertions
            out.append(err)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    return thread, out


def _wait_for(said: list[str], text: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 600  # generous: never a timed assertion on a loaded machine
    while not any(text in line for line in said):
        assert thread.is_alive(), f"builder ended without saying {text!r}: {said}"
        assert time.monotonic() < deadline, f"builder never said {text!r}: {said}"
        time.sleep(0.05)


def test_a_live_build_elsewhere_is_waited_for_never_deleted(tree_corpus, tmp_path):
    # Another node builds the same spec on the shared volume: it holds the spec's lock and has a
    # temp dir whose pid means nothing on this host. This builder must wait, not delete it.
    spec = tree_spec(tree_corpus)
    tmp_path.mkdir(exist_ok=True)
    theirs = tmp_path / f".tmp-{spec.spec_hash}-1-othernode"
    (theirs / "budget_3000").mkdir(parents=True)
    other = FileLock(tmp_path / f".lock-{spec.spec_hash}")
    other.acquire()
    said: list[str] = []
    try:
        thread, out = _build_in_thread(spec, tmp_path, said)
        _wait_for(said, "waiting for another builder", thread)
        assert theirs.is_dir() and not (tmp_path / spec.spec_hash).exists()
    finally:
        other.release()  # the other node's builder died without finishing
    thread.join(timeout=600)
    assert not thread.is_alive() and not isinstance(out[0], BaseException), out
    assert not theirs.exists()  # a dead builder's leftovers go once its lock is free
    assert (tmp_path / spec.spec_hash / COMPLETE_MARKER).is_file()


def test_two_concurrent_builders_build_once(tree_corpus, tmp_path):
    spec = tree_spec(tree_corpus)
    said_a: list[str] = []
    said_b: list[str] = []
    first, out_a = _build_in_thread(spec, tmp_path, said_a)
    _wait_for(said_a, "", first)  # the first has started building (it reports every phase)
    second, out_b = _build_in_thread(spec, tmp_path, said_b)
    first.join(timeout=600)
    second.join(timeout=600)
    assert not first.is_alive() and not second.is_alive()
    assert not isinstance(out_a[0], BaseException) and not isinstance(out_b[0], BaseException)
    assert out_a[0] == out_b[0]  # the same manifests
    # One of them built; the other waited (or found it done) and loaded the first one's budgets.
    loaded = [s for s in (said_a, said_b) if any("by another process" in m for m in s)]
    loaded += [s for s in (said_a, said_b) if any("already built" in m for m in s)]
    assert len(loaded) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_corpus_smaller_than_budget_names_available_tokens(tree_corpus, tmp_path):
    spec = tree_spec(tree_corpus, sizes=(3000, 10_000_000))
    with pytest.raises(PipelineError, match=r"corpus too small: \d+ unique training tokens"):
        build_budgets(spec, root=tmp_path)
    # Nothing half-built is left; only the spec's (released) build lock file, which filelock
    # keeps on purpose: deleting a lock file another builder may be opening is a race.
    left = list(tmp_path.iterdir())
    assert [p.name for p in left if not p.name.startswith(".lock-")] == []
    assert all(p.is_file() and p.stat().st_size == 0 for p in left)


def test_missing_and_empty_corpora(tmp_path):
    with pytest.raises(PipelineError, match="source.path does not exist: .*nowhere"):
        build_budgets(tree_spec(tmp_path / "nowhere"), root=tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("\n\n")
    with pytest.raises(PipelineError, match="empty corpus"):
        build_budgets(tree_spec(empty), root=tmp_path / "out")


def test_user_tokenizer_used_and_bad_ones_rejected(built, tree_corpus, tmp_path):
    _, _, (m, _) = built
    spec = tree_spec(tree_corpus, tokenizer={"path": m.tokenizer_path})
    manifests = build_budgets(spec, root=tmp_path / "user")
    assert manifests[0].tokenizer_sha256 == m.tokenizer_sha256
    assert manifests[0].vocab_size == m.vocab_size
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(PipelineError, match="not a valid tokenizer.json: .*bad.json"):
        build_budgets(tree_spec(tree_corpus, tokenizer={"path": str(bad)}), root=tmp_path)
    with pytest.raises(PipelineError, match="tokenizer.path does not exist"):
        build_budgets(
            tree_spec(tree_corpus, tokenizer={"path": str(tmp_path / "x.json")}), root=tmp_path
        )
    no_eos = tree_spec(tree_corpus, tokenizer={"path": m.tokenizer_path, "eos_token": "<nope>"})
    with pytest.raises(PipelineError, match="eos_token '<nope>'"):
        build_budgets(no_eos, root=tmp_path)


def test_cut_nested_picks_fewest_documents():
    ends = np.array([10, 25, 40, 100], dtype=np.uint64)
    assert cut_nested(ends, [10, 11, 40, 41]) == [1, 2, 3, 4]
    with pytest.raises(PipelineError, match="100 unique training tokens available"):
        cut_nested(ends, [101])


def test_tiny_heldout_rejected_with_eval_set_named(tmp_path):
    corpus = tmp_path / "c"
    write_tree(corpus, make_texts(12, seed=3))
    spec = tree_spec(corpus, sizes=(500,), heldout_fraction=0.01)
    with pytest.raises(PipelineError, match="heldout"):
        build_budgets(spec, root=tmp_path / "out")
