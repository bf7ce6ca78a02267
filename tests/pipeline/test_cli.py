"""`budgets build` end to end on a tiny directory corpus, and its user errors (one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


SPECS = {
    "unknown.json": '{"sizes": [100], "bogus": 1}',
    "broken.json": '{"sizes": [100],',
    "jsonl.json": '{"sizes": [100], "source": {"kind": "jsonl"}}',
}
BAD_ARGS = [
    (["--sizes", "1000,-5"], "argument --sizes: wants comma-separated positive integers"),
    (["--sizes", "1k"], "got '1k' in '1k'"),
    (["--sizes", "1000", "--max-files", "0"], "source.max_files: Input should be greater than"),
    (["--sizes", "1000", "--heldout", "0.9"], "heldout_fraction: Input should be less than 0.5"),
    (["--sizes", "1000", "--on-bad-record", "ignore"], "argument --on-bad-record: invalid choice"),
    (["--sizes", "1000", "--corpus", "nowhere"], "source.path does not exist: nowhere"),
    (["--sizes", "1000", "--spec", "missing.json"], "--spec missing.json: No such file"),
    (["--sizes", "1", "--spec", "unknown.json"], "bogus: Extra inputs are not permitted; allowed:"),
    (["--sizes", "1", "--spec", "broken.json"], "broken.json: Invalid JSON"),
    (["--sizes", "1", "--spec", "jsonl.json"], "source.path is required for kind='jsonl'"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_user_errors_are_short_named_and_exit_2(args, fragment, tmp_path, monkeypatch, capsys):
    for name, text in SPECS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["build", *args, "--root", str(tmp_path / "out")])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "out").exists()


def test_bad_sizes_through_the_real_entry_point(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "build", "--sizes", "1000,-5"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "budgets build: error: argument --sizes: wants comma-separated positive integers "
        "(e.g. 100000,4e5), got '-5' in '1000,-5' (see budgets build --help)"
    ]
