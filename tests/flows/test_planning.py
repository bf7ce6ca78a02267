"""`flows plan` end to end: the published prior, a one-size synthetic study in a real DuckDB
(not identified: no recommendation), and bad input as one line naming the field, exit 2."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from analysis.store import ResultsStore
from analysis.study import analyze_study
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study
from flows import cli
from flows.planning import PlanInputError, PlanRequest


@pytest.fixture(scope="module")
def one_size_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A studies home holding study `syn`: one model size, two budgets, analysed (law_fits)."""
    home = tmp_path_factory.mktemp("plan-home")
    spec = SyntheticStudySpec(unique_tokens=(10**8, 10**9), epochs=(1.0, 4.0, 16.0))
    write_synthetic_study(home / "syn", spec)
    db = home / "syn" / "results.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(home / "syn" / "runs")
    analyze_study(db, n_boot=5)
    return home


def _plan(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(cli, "_quiet", lambda: None)  # keeps this process's logging as it is
    try:
        code = cli.main(["plan", *args])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_prior_plan_in_the_terminal(tmp_path: Path, monkeypatch, capsys) -> None:
    figure = tmp_path / "plan.html"
    args = ["--unique-tokens", "1e9", "--compute", "1e19", "--prior", "published"]
    code, out, err = _plan([*args, "--figure", str(figure)], monkeypatch, capsys)
    assert code == 0, err
    assert "recommendation: train AR, N = " in out  # compute-limited: AR, decisively
    assert "Muennighoff" in out and "Prabhudesai" in out and "C = 6 N D" in out
    assert "P(DLM better)" in out and "C_crit(U)" in out and "(~: too close to call)" in out
    assert figure.stat().st_size > 100_000  # self-contained: plotly.js inlined


def test_one_size_study_says_not_identified(one_size_home: Path, monkeypatch, capsys) -> None:
    args = ["--unique-tokens", "1e9", "--compute", "1e21", "--study", "syn"]
    code, out, err = _plan([*args, "--home", str(one_size_home)], monkeypatch, capsys)
    assert code == 0, err
    assert "no recommendation: not identified" in out and "1 model size" in out
    assert "train" not in out and "C_crit" not in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--unique-tokens", "-5", "--compute", "1e20", "--prior", "published"],
         "argument --unique-tokens: wants a positive number, got '-5'"),
        (["--unique-tokens", "1e9", "--compute", "lots", "--prior", "published"],
         "argument --compute: wants a positive number, got 'lots'"),
        (["--unique-tokens", "1e9", "--compute", "inf", "--prior", "published"],
         "argument --compute: wants a positive number, got 'inf'"),
        (["--unique-tokens", "1e9", "--compute", "1e20", "--study", "nope"],
         "flows plan: study: no study 'nope' under"),
        (["--unique-tokens", "1e9", "--compute", "1e20", "--study", "../x"],
         "flows plan: study: '../x' is not a study name"),
        (["--unique-tokens", "1e9", "--compute", "1e20"],
         "one of the arguments --study --prior is required"),
        (["--unique-tokens", "1e9", "--compute", "1e20", "--prior", "guess"],
         "argument --prior: invalid choice: 'guess'"),
        (["--unique-tokens", "1e9", "--compute", "1e20", "--prior", "published",
          "--confidence", "1.5"], "flows plan: confidence: wants a number in (0, 1), got 1.5"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_naming_the_field(
    args: list[str], fragment: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    code, _, err = _plan([*args, "--home", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_study_without_law_fits_says_what_to_run(tmp_path: Path, monkeypatch, capsys) -> None:
    with ResultsStore(tmp_path / "bare" / "results.duckdb") as store:
        store.ensure_schema()
    args = ["--unique-tokens", "1e9", "--compute", "1e20", "--study", "bare"]
    code, _, err = _plan([*args, "--home", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "study: 'bare' has no law fits yet (run `flows run report`" in err


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"unique_tokens": 0.0}, "unique_tokens"),
        ({"compute": math.nan}, "compute"),
        ({"compute": "1e20"}, "compute"),
        ({"prior": None}, "study/prior"),
        ({"study": "s"}, "study/prior"),
    ],
)
def test_request_errors_name_the_field(kwargs: dict, field: str) -> None:
    base = {"unique_tokens": 1e9, "compute": 1e20, "prior": "published"}
    with pytest.raises(PlanInputError, match=rf"^{field}: "):
        PlanRequest(**(base | kwargs))
