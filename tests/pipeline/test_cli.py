"""`budgets build` end to end on a tiny directory corpus."""

from __future__ import annotations

import json

from pipeline_corpora import make_texts, write_tree

from pipeline.cli import main


def test_build_prints_manifest_summary(tmp_path, capsys):
    corpus = tmp_path / "c"
    write_tree(corpus, make_texts(60, seed=21))
    argv = [
        "build",
        "--sizes",
        "2000,5000",
        "--corpus",
        str(corpus),
        "--glob",
        "*.txt",
        "--vocab",
        "400",
        "--heldout",
        "0.25",
        "--eval-items",
        "4",
        "--root",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    summaries = [json.loads(line) for line in lines if line.startswith("{")]
    assert [s["requested"] for s in summaries] == [2000, 5000]
    assert all(s["unique_tokens"] >= s["requested"] for s in summaries)
    assert main(argv) == 0
    assert "already built" in capsys.readouterr().out


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    assert main(["build", "--sizes", "100", "--corpus", str(tmp_path / "missing")]) == 2
    assert "source.path does not exist" in capsys.readouterr().err
