"""End to end on every CI run: the smoke preset through the real path, budgets -> runs on Ray
(embedded) under Prefect (temporary server) -> DuckDB -> fits and crossovers -> HTML report.

It checks the shape of what a user gets, not the science (the smoke study trains for seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq

from analysis.store import ResultsStore
from analysis.study import analyze_study
from pipeline import load_manifest, read_tokens

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


def _run_study(home: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )
    argv = [sys.executable, "-m", "flows.cli", "run", "study", "--preset", "smoke"]
    argv += ["--home", str(home), "--num-cpus", "2", "--json"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


def test_smoke_study_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = _run_study(home, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert summary["failed"] == 0 and summary["completed"] == summary["n_runs"] == 4

    # Budgets: nested, exact counts recorded.
    manifests = sorted(
        (load_manifest(p) for p in home.glob("budgets/*/budget_*/manifest.json")),
        key=lambda m: m.unique_tokens,
    )
    assert [m.requested_tokens for m in manifests] == [4000, 12000]
    small, large = (read_tokens(m.train_files, m.token_dtype) for m in manifests)
    assert len(small) == manifests[0].unique_tokens and (large[: len(small)] == small).all()

    # Runs -> DuckDB: every run once, every parquet row once.
    runs_root = home / "smoke" / "runs"
    run_dirs = sorted(p for p in runs_root.iterdir() if (p / "result.json").exists())
    assert len(run_dirs) == 4
    n_evals = sum(pq.read_metadata(d / "evals.parquet").num_rows for d in run_dirs)
    n_metrics = sum(pq.read_metadata(d / "metrics.parquet").num_rows for d in run_dirs)
    store = ResultsStore(summary["db_path"])
    counts = store.query(
        "SELECT (SELECT count(*) FROM runs) r, (SELECT count(DISTINCT run_id) FROM runs) u, "
        "(SELECT count(*) FROM evals) e, (SELECT count(*) FROM metrics) m, "
        "(SELECT count(*) FROM budgets) b"
    ).iloc[0]
    assert (counts.r, counts.u, counts.e, counts.m, counts.b) == (4, 4, n_evals, n_metrics, 2)
    objectives = store.query("SELECT objective, count(*) n FROM runs GROUP BY 1 ORDER BY 1")
    assert objectives.to_dict("list") == {"objective": ["ar", "dlm"], "n": [2, 2]}

    # Fits and crossovers: one row per (model, budget, metric), each with a status, never silent.
    analysis = analyze_study(store, n_boot=20)
    table = analysis.crossovers
    assert len(table) == 2 * 2 and set(table["metric"]) == {"val_loss", "mc_acc"}
    assert table["status"].notna().all()

    # The report: self-contained (plotly inline, no CDN) with every section.
    html = Path(summary["report_path"]).read_text()
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined
    parser = _Headings()
    parser.feed(html)
    text = " ".join(parser.headings)
    for section in ("Loss and accuracy vs epochs", "Crossover table", "Critical compute"):
        assert section in text, f"report lacks {section!r}: {parser.headings}"
