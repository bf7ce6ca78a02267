"""The frontier C_crit table of a study: a planted frontier crossover recovered from a synthetic
study (real run files, DuckDB, the law fits and their draws), and 'not identified' with no
numbers when the study has fewer than 3 model sizes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.frontier import frontier_crossover
from analysis.frontier_table import frontier_display
from analysis.laws import MUENNIGHOFF_2023
from analysis.report import render_html
from analysis.store import ResultsStore
from analysis.study import analyze_study
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study

AR = MUENNIGHOFF_2023
DLM = AR.with_(B=AR.B * 1.1, rd_star=100.0)  # crosses AR's frontier at ~53 x 6 U^2 FLOPs
SIZES = (10_000_000, 30_000_000, 100_000_000, 300_000_000)
BUDGETS = (100_000_000, 300_000_000, 1_000_000_000)


def _analyse(root: Path, sizes: tuple[int, ...], n_boot: int):
    spec = SyntheticStudySpec(
        n_params=sizes,
        unique_tokens=BUDGETS,
        epochs=(1.0, 4.0, 16.0, 64.0),
        laws={"ar": AR, "dlm": DLM},
        noise=0.003,
        evals_per_run=3,
    )
    write_synthetic_study(root, spec)
    with ResultsStore(root / "r.duckdb") as store:
        store.ingest_runs_root(root / "runs")
    return analyze_study(root / "r.duckdb", n_boot=n_boot, seed=0)


def test_synthetic_study_recovers_the_planted_frontier_crossover(tmp_path: Path) -> None:
    analysis = _analyse(tmp_path / "s", SIZES, n_boot=20)
    table = analysis.frontier.set_index("unique_tokens")
    for u in BUDGETS:
        truth = frontier_crossover(AR, DLM, u).compute  # the synthetic runs count 6 N D
        row = table.loc[float(u)]
        assert row["status"] == "crossover", row["status"]
        assert row["compute_lo"] <= truth <= row["compute_hi"], (u, truth, row.to_dict())
        assert 0.5 < row["compute"] / truth < 2.0
        assert row["p_crossover"] >= 0.9 and row["n_draws"] == 20
    # The smallest budget's crossover lies inside the measured sizes, epochs and compute; the
    # largest needs a model beyond the largest measured (3e8), and says so.
    assert not table.loc[1e8, "extrapolated"]
    assert table.loc[1e9, "extrapolated"] and "optimal N" in table.loc[1e9, "note"]
    stored = ResultsStore(tmp_path / "s" / "r.duckdb").query("FROM frontier_crossovers")
    assert len(stored) == len(BUDGETS) and stored["compute"].notna().all()
    analyze_study(tmp_path / "s" / "r.duckdb", n_boot=2, seed=0)  # a rerun replaces, never adds
    assert len(ResultsStore(tmp_path / "s" / "r.duckdb").query("FROM frontier_crossovers")) == 3
    html = render_html(analysis, {}, "t")
    assert "compute-optimal frontier" in html and "[interval unknown]" not in html


def test_fewer_than_three_sizes_say_not_identified_and_print_no_number(tmp_path: Path) -> None:
    analysis = _analyse(tmp_path / "s", SIZES[1:3], n_boot=2)
    table = analysis.frontier
    assert len(table) == len(BUDGETS)
    assert table["status"].str.startswith("not identified: ar A: 2 model size(s)").all()
    assert table[["compute", "compute_lo", "compute_hi", "p_crossover"]].isna().all().all()
    stored = ResultsStore(tmp_path / "s" / "r.duckdb").query("FROM frontier_crossovers")
    assert stored["compute"].isna().all() and stored["status"].str.contains("not identified").all()
    shown = frontier_display(table)
    assert shown["C_crit (FLOPs) [95%]"].str.startswith("not identified").all()
    assert not any(math.isfinite(float(v)) for v in stored["compute"].dropna())
    assert any("compute-optimal frontier: not identified" in n for n in analysis.notes)


def test_interval_is_symmetric_in_log_and_keeps_open_edges_open() -> None:
    from analysis.frontier_table import _bootstrap_interval

    draws = np.array([4.0, 5.0, 6.0, 7.0])
    assert _bootstrap_interval(5.0, draws) == (5.0 / 1.4, 7.0)  # the wider side, mirrored
    assert _bootstrap_interval(5.0, np.append(draws[:3], np.inf)) == (4.0, math.inf)
    assert _bootstrap_interval(5.0, np.array([0.0, 5.0, 6.0])) == (0.0, 6.0)
