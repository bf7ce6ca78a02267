"""The same study spec, trained twice, gives bit-identical ``eval_points`` rows in DuckDB.

The smoke grid's runs on its smaller budget (both objectives) are trained twice from the same built
budgets, the second time in the reverse order (as a different Ray schedule would hand runs to one
worker process), each into its own study home, and each ingested into its own store. Every column
of every evaluation point must be equal to the bit: any hidden state carried between runs (a global
RNG, the thread count left by the previous run) or an unordered iteration would show here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from analysis.store import ResultsStore
from flows.grid import expand_grid
from flows.spec import StudySpec
from training_core.trainer import train_run


def _train_and_ingest(runs, home: Path) -> pd.DataFrame:
    runs_root = home / "runs"
    for run in runs:
        result = train_run(run.config, runs_root / run.run_id)
        assert result.completed, result.failure_reason
    with ResultsStore(home / "results.duckdb") as store:
        store.ingest_runs_root(runs_root)
        return store.query("SELECT * FROM eval_points ORDER BY run_id, step, kind")


def test_same_spec_twice_gives_identical_eval_points(
    smoke_spec: StudySpec, smoke_budgets, tmp_path: Path
) -> None:
    _, manifests = smoke_budgets
    grid = expand_grid(smoke_spec, manifests)
    runs = [r for r in grid if r.unique_tokens == min(m.unique_tokens for m in manifests)]
    threads = torch.get_num_threads()
    try:
        first = _train_and_ingest(runs, tmp_path / "first")
        second = _train_and_ingest(list(reversed(runs)), tmp_path / "second")
    finally:
        torch.set_num_threads(threads)
    assert len(first) > 0 and first["run_id"].nunique() == len(runs)
    assert set(first["objective"]) == {"ar", "dlm"}
    pd.testing.assert_frame_equal(first, second, check_exact=True)
