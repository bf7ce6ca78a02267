"""End to end on every CI run: the smoke preset through the real path, budgets -> runs on Ray
(embedded) under Prefect (temporary server) -> DuckDB -> fits and crossovers -> HTML report,
with failures counted in the exit code and a rerun that resumes only what failed.

One study serves both stories (a failed sweep, then the resumed study a user gets), so the
smoke grid trains twice (2 runs each time), not three times. It checks the shape of what a user
gets, not the science (the smoke study trains for seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from analysis.store import ResultsStore
from analysis.study import analyze_study
from flows import cli
from flows.spec import load_preset
from pipeline import build_budgets, load_manifest, read_tokens

ROOT = Path(__file__).resolve().parents[1]


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._in = tag in ("h1", "h2")

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.headings.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        self._in = False


def _flows(args: list[str], prefect_home: Path) -> subprocess.CompletedProcess:
    """`flows ARGS` in a child with this test's fresh PREFECT_HOME (shared by its calls)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )
    argv = [sys.executable, "-m", "flows.cli", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


def _hide_smallest_budget_tokens(home: Path) -> list[Path]:
    """Break the smallest budget's tokens: its runs raise inside train_run; the others train."""
    spec = load_preset("smoke")
    budget_dir = home / "budgets" / spec.budgets.spec_hash / f"budget_{spec.budgets.sizes[0]}"
    hidden = [Path(name) for name in load_manifest(budget_dir / "manifest.json").train_files]
    for path in hidden:
        path.rename(f"{path}.hidden")
    return hidden


# Two sweeps in one test: twice the suite's per-test timeout, generous on a loaded 2-core machine.
@pytest.mark.timeout(1800)
def test_smoke_study_failures_then_resume_end_to_end(
    tmp_path: Path,
    prefect_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    home = tmp_path / "home"
    build_budgets(load_preset("smoke").budgets, home / "budgets")  # what the CLI builds first
    hidden = _hide_smallest_budget_tokens(home)
    args = ["--preset", "smoke", "--home", str(home), "--num-cpus", "2"]

    first = _flows(["run", "sweep", *args], prefect_home)
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 trained, 0 already done, 2 failed" in first.stdout
    assert first.stdout.count("FAILED ") == 2
    db_path = home / "smoke" / "results.duckdb"
    assert f"results (DuckDB): {db_path}" in first.stdout
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("SELECT status, failure_reason FROM runs").fetchall()
    assert sorted(r[0] for r in rows) == ["completed"] * 2 + ["failed"] * 2
    assert all("train.ds" in (reason or "") for status, reason in rows if status == "failed")

    for path in hidden:
        Path(f"{path}.hidden").rename(path)
    second = _flows(["run", "study", *args, "--json"], prefect_home)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads(second.stdout[second.stdout.index("{") :])
    assert (summary["completed"], summary["skipped"], summary["failed"]) == (2, 2, 0)
    assert summary["n_runs"] == 4 and Path(summary["db_path"]) == db_path
    # Quiet: no library log walls on the terminal.
    assert "INFO" not in second.stderr and "Traceback" not in second.stderr

    _check_budgets(home)
    _check_results(home, summary["db_path"])
    assert Path(summary["report_path"]) == home / "smoke" / "report" / "report.html"
    _check_report(Path(summary["report_path"]))

    # `flows status` in this process (it starts nothing; one Python + torch start less).
    monkeypatch.setattr(cli, "_quiet", lambda: None)  # keeps this process's logging as it is
    assert cli.main(["status", "--preset", "smoke", "--home", str(home)]) == 0
    assert "4 completed" in capsys.readouterr().out


def _check_budgets(home: Path) -> None:
    """Budgets: nested, exact counts recorded."""
    manifests = sorted(
        (load_manifest(p) for p in home.glob("budgets/*/budget_*/manifest.json")),
        key=lambda m: m.unique_tokens,
    )
    assert [m.requested_tokens for m in manifests] == [4000, 12000]
    small, large = (read_tokens(m.train_files, m.token_dtype) for m in manifests)
    assert len(small) == manifests[0].unique_tokens and (large[: len(small)] == small).all()


def _check_results(home: Path, db_path: str) -> None:
    """Runs -> DuckDB after a failed sweep and its rerun: every run once, every parquet row once;
    fits and crossovers: one row per (model, budget, metric), each with a status, never silent."""
    runs_root = home / "smoke" / "runs"
    run_dirs = sorted(p for p in runs_root.iterdir() if (p / "result.json").exists())
    assert len(run_dirs) == 4
    n_evals = sum(pq.read_metadata(d / "evals.parquet").num_rows for d in run_dirs)
    n_metrics = sum(pq.read_metadata(d / "metrics.parquet").num_rows for d in run_dirs)
    store = ResultsStore(db_path)
    counts = store.query(
        "SELECT (SELECT count(*) FROM runs) r, (SELECT count(DISTINCT run_id) FROM runs) u, "
        "(SELECT count(*) FROM evals) e, (SELECT count(*) FROM metrics) m, "
        "(SELECT count(*) FROM budgets) b"
    ).iloc[0]
    assert (counts.r, counts.u, counts.e, counts.m, counts.b) == (4, 4, n_evals, n_metrics, 2)
    statuses = store.query("SELECT status, count(*) n FROM runs GROUP BY 1").to_dict("list")
    assert statuses == {"status": ["completed"], "n": [4]}
    objectives = store.query("SELECT objective, count(*) n FROM runs GROUP BY 1 ORDER BY 1")
    assert objectives.to_dict("list") == {"objective": ["ar", "dlm"], "n": [2, 2]}

    table = analyze_study(store, n_boot=20).crossovers
    assert len(table) == 2 * 2 and set(table["metric"]) == {"val_loss", "mc_acc"}
    assert table["status"].notna().all()


def _check_report(path: Path) -> None:
    """The report: self-contained (plotly inline, no CDN) with every section."""
    html = path.read_text()
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined
    parser = _Headings()
    parser.feed(html)
    text = " ".join(parser.headings)
    for section in ("Loss and accuracy vs epochs", "Crossover table", "Critical compute"):
        assert section in text, f"report lacks {section!r}: {parser.headings}"
