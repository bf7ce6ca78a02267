"""Every user error of the `flows` CLI is one to three lines naming the file, field or value and
what is allowed, with exit code 2, no traceback, and nothing started (no Prefect database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli

CLI = [sys.executable, "-m", "flows.cli"]
GOOD = "name: x\nbudgets: {sizes: [100]}\nmodels: [tiny]\nepochs: [1]\n"
FILES = {
    "syntax.yaml": "name: x\nbudgets: {sizes: [100]\nmodels: [tiny]\n",
    "unknown.yaml": GOOD + "bogus: 1\n",
    "value.yaml": GOOD + "seq_len: 4\n",
    "model.yaml": GOOD.replace("[tiny]", "[tiny, xxl]"),
    "list.yaml": "- name: x\n",
    "records.yaml": GOOD.replace(
        "{sizes: [100]}", "{sizes: [100], source: {kind: jsonl, path: bad.jsonl}}"
    ),
    "corpus.yaml": GOOD.replace(
        "{sizes: [100]}", "{sizes: [100], source: {kind: jsonl, path: /nowhere/corpus.jsonl}}"
    ),
}

CASES = [
    (["run", "sweep", "--config", "syntax.yaml"], "syntax.yaml:3:1: YAML syntax error: expected"),
    (["run", "sweep", "--config", "missing.yaml"], "missing.yaml: no such file"),
    (["status", "--config", "missing.yaml"], "missing.yaml: no such file"),
    (
        ["run", "sweep", "--config", "unknown.yaml"],
        "bogus: Extra inputs are not permitted; allowed: name, description, budgets",
    ),
    (
        ["run", "sweep", "--config", "value.yaml"],
        "seq_len: Input should be greater than or equal to 8 (got 4)",
    ),
    (
        ["run", "sweep", "--config", "model.yaml", "--dry-run"],
        "models[1]: unknown preset 'xxl'; choose from",
    ),
    (["run", "study", "--config", "list.yaml"], "list.yaml: expected a mapping at the top level"),
    (
        ["run", "sweep", "--config", "corpus.yaml"],
        "corpus.yaml: budgets: source.path does not exist: /nowhere/corpus.jsonl",
    ),
    (
        ["run", "budgets", "--preset", "paper-full"],
        "preset paper-full: budgets: source.path does not exist",
    ),
    (["run", "sweep", "--preset", "nope"], "unknown preset 'nope'; choose from"),
    (["run", "sweep", "--num-cpus", "0"], "argument --num-cpus: wants a positive integer, got '0'"),
    (["run", "swep"], "invalid choice: 'swep' (choose from 'sweep'"),
    (["server", "--port", "70000"], "argument --port: wants a port in 1..65535, got '70000'"),
    (["run", "study", "--config", "records.yaml"], "records.yaml: budgets: /"),
]


def _write_files(folder: Path) -> None:
    for name, text in FILES.items():
        (folder / name).write_text(text)
    # A JSONL corpus whose second record is Latin-1: found while reading, still before Prefect.
    (folder / "bad.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')


def _with_home(args: list[str], home: Path) -> list[str]:
    return [*args, "--home", str(home)] if args[0] != "server" else args


def _assert_short(stderr: str, fragment: str) -> None:
    assert fragment in stderr
    if "records.yaml" in fragment:  # the bad record's own file and line, whatever the temp dir
        assert "/bad.jsonl:2: not UTF-8" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize(("args", "fragment"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_user_error_is_short_named_and_exits_2(
    args: list[str], fragment: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    """In-process (an uncaught exception here is the traceback a user would see)."""
    _write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(cli, "_quiet", lambda: None)  # keeps this process's logging as it is
    try:
        code = cli.main(_with_home(args, tmp_path / "home"))
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    _assert_short(capsys.readouterr().err, fragment)
    assert not (tmp_path / "prefect-home").exists() and not (tmp_path / "home" / "x").exists()


@pytest.mark.parametrize("row", [0, 7, -1], ids=["yaml syntax", "missing corpus", "bad record"])
def test_user_error_through_the_real_entry_point(row: int, tmp_path: Path, cli_env: dict) -> None:
    """The same rows as a user meets them: `python -m flows.cli`; nothing starts (no Prefect
    database is created, no study folder)."""
    args, fragment = CASES[row]
    _write_files(tmp_path)
    proc = subprocess.run(
        [*CLI, *_with_home(args, tmp_path / "home")],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _assert_short(proc.stderr, fragment)
    assert not list(Path(cli_env["PREFECT_HOME"]).glob("*.db"))
    assert not (tmp_path / "home" / "x").exists()
