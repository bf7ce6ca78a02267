"""manifest.json: read, written, and the run-facing DataConfig taken from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.budget import (
    MANIFEST_NAME,
    BudgetManifest,
    DataConfig,
    budget_dir,
    load_manifest,
    manifest_paths,
    write_manifest,
)
from formats.errors import FormatError


def _manifest(size: int = 1000) -> BudgetManifest:
    return BudgetManifest(
        budget_id=f"abc-{size}",
        spec_hash="abc",
        requested_tokens=size,
        unique_tokens=size + 7,
        n_documents=3,
        token_dtype="uint32",
        vocab_size=300,
        eos_id=0,
        tokenizer_path="/t/tokenizer.json",
        tokenizer_sha256="0" * 64,
        train_files=["/a/0.ds", "/a/1.ds"],
        val_files=["/h/val.ds"],
        val_tokens=99,
        eval_mc_path="/h/eval_mc.parquet",
        content_sha256="1" * 64,
        seed=3,
        source_stats={"docs": 3},
        filter_stats={},
        created_at="2026-01-01T00:00:00+00:00",
    )


def test_manifest_round_trips_and_is_found_by_its_layout(tmp_path: Path) -> None:
    for size in (1000, 3000):
        path = budget_dir(tmp_path, size) / MANIFEST_NAME
        path.parent.mkdir()
        write_manifest(_manifest(size), path)
    paths = manifest_paths(tmp_path)
    assert [p.parent.name for p in paths] == ["budget_1000", "budget_3000"]
    assert load_manifest(paths[0]) == _manifest(1000)
    assert load_manifest(paths[0].parent) == _manifest(1000)  # the budget dir works too


def test_data_config_is_the_manifest_fields_a_run_reads() -> None:
    data = _manifest().data_config()
    assert type(data) is DataConfig
    assert data.train_files == ("/a/0.ds", "/a/1.ds") and data.token_dtype == "uint32"
    assert data.unique_tokens == 1007 and data.budget_id == "abc-1000"
    assert data.eval_mc_path == "/h/eval_mc.parquet" and data.vocab_size == 300


def test_bad_manifests_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="manifest not found: .*nowhere"):
        load_manifest(tmp_path / "nowhere")
    path = tmp_path / MANIFEST_NAME
    path.write_text(_manifest().model_dump_json().replace('"vocab_size":300', '"vocab_size":"x"'))
    with pytest.raises(FormatError, match=f"invalid manifest {path}: vocab_size: .*integer"):
        load_manifest(path)
