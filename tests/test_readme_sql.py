"""Every ```sql block of README.md runs on a study database, and query 1 (the crossover table)
answers exactly what the terminal summary and the report show.

The study is synthetic (``analysis.synthetic``: run dirs written by the trainer's own writers,
one failed run so the failure query has rows), analysed by the report as a sweep's end does."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analysis.crossover_store import N_BOOT
from analysis.report import write_report
from analysis.store import ResultsStore
from analysis.summary import crossover_table, format_summary, interval_text
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries(text: str) -> list[str]:
    """The bodies of the ```sql fenced blocks, in order."""
    return [m.strip() for m in re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(database, report html) of a two-budget synthetic study with one failed run."""
    root = tmp_path_factory.mktemp("readme-study")
    spec = SyntheticStudySpec(unique_tokens=(300_000_000, 1_000_000_000), n_failed=1)
    write_synthetic_study(root, spec)
    db = root / "results.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(root / "runs")
    report = write_report(db, root / "report", png=False).read_text(encoding="utf-8")
    return db, report


def test_readme_has_the_documented_queries() -> None:
    queries = readme_queries(README.read_text(encoding="utf-8"))
    assert len(queries) >= 5
    assert "FROM crossovers" in queries[0]


def test_every_readme_query_runs_and_answers(study: tuple[Path, str]) -> None:
    db, _ = study
    with duckdb.connect(str(db), read_only=True) as con:
        for i, sql in enumerate(readme_queries(README.read_text(encoding="utf-8")), 1):
            rows = con.execute(sql).fetchdf()
            assert not rows.empty, f"README SQL query {i} returned no rows:\n{sql}"


def test_readme_crossover_query_matches_terminal_and_report(study: tuple[Path, str]) -> None:
    db, report = study
    query = readme_queries(README.read_text(encoding="utf-8"))[0]
    with duckdb.connect(str(db), read_only=True) as con:
        sql_rows = con.execute(query).fetchdf()
    terminal = crossover_table(db)
    text = format_summary(terminal)
    assert set(sql_rows["n_boot"]) == {N_BOOT}
    assert (sql_rows["status"] == "crossover").any()  # the planted laws cross in this range
    key = ["metric", "model_name", "unique_tokens"]
    joined = sql_rows.merge(terminal, on=key, suffixes=("_sql", ""), validate="one_to_one")
    assert len(joined) == len(terminal) == len(sql_rows)
    for col in ("status", "epoch", "epoch_lo", "epoch_hi", "p_crossover", "flops", "n_boot"):
        pd.testing.assert_series_equal(
            joined[f"{col}_sql"], joined[col], check_names=False, check_dtype=False
        )
    for _, row in joined.iterrows():
        line = f"{row['model_name']} U={row['unique_tokens']:.3g} {row['metric']}: "
        assert line in text
        if row["status"] == "crossover":
            assert math.isfinite(row["epoch_sql"])
            assert f"after {row['epoch_sql']:.3g} epochs" in text
        if row["status"] != "insufficient_data":
            assert html.escape(interval_text(row)) in report
