"""The HTML report: every section on a synthetic study, a clear page on an empty one."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from analysis_fixtures import make_run

from analysis.report import build_figures, png_unavailable_reason, write_report
from analysis.store import ResultsStore
from analysis.study import analyze_study
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study

SECTIONS = {
    "overview",
    "curves",
    "crossovers",
    "law-fits",
    "law-params",
    "critical-compute",
    "frontier",
    "plan",
    "divergence",
    "runs",
}
FIGURES = {"fig-curves-val_loss", "fig-curves-mc_acc", "fig-law-fit", "fig-critical-compute"}


class _Outline(HTMLParser):
    """Section ids, figure div ids, table count and the text of every script."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.divs: set[str] = set()
        self.tables = 0
        self.scripts: list[str] = []
        self._in_script = False
        self.remote_scripts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "div" and "id" in a:
            self.divs.add(a["id"])
        elif tag == "table":
            self.tables += 1
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")
            if "src" in a:
                self.remote_scripts.append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _outline(path: Path) -> tuple[_Outline, str]:
    text = path.read_text(encoding="utf-8")
    parser = _Outline()
    parser.feed(text)
    return parser, text


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticStudySpec(
        n_params=(10_000_000, 30_000_000, 100_000_000),
        unique_tokens=(300_000_000, 1_000_000_000),
        epochs=(1.0, 4.0, 16.0, 64.0),
        n_failed=1,
        ar_overfit=0.1,
    )
    write_synthetic_study(root / "demo", spec)
    with ResultsStore(root / "demo" / "results.duckdb") as store:
        store.ingest_runs_root(root / "demo" / "runs")
    return root / "demo" / "results.duckdb"


def test_report_on_synthetic_study_has_every_section(synthetic_db: Path, tmp_path: Path) -> None:
    path = write_report(synthetic_db, tmp_path / "report", n_boot=10)
    outline, text = _outline(path)
    assert set(outline.sections) == SECTIONS
    assert FIGURES <= outline.divs
    # plotly.js is inlined exactly once (offline), never fetched from a CDN.
    assert sum("plotly.js v" in s for s in outline.scripts) == 1
    assert outline.remote_scripts == []
    assert outline.tables >= 4  # crossovers, law parameters, C_crit fits, runs
    assert "non-finite loss at step" in text  # the failed run and its reason
    assert "rd_star" in text and "demo" in text
    if png_unavailable_reason() is not None:
        assert "PNG export skipped" in text
    else:
        assert (tmp_path / "report" / "crossover.png").exists()


def test_report_on_empty_study_says_so(tmp_path: Path) -> None:
    path = write_report(tmp_path / "empty.duckdb", tmp_path / "out")
    outline, text = _outline(path)
    assert outline.sections == ["empty"]
    assert "no runs yet" in text


def test_build_figures_returns_plotly_figures(synthetic_db: Path) -> None:
    analysis = analyze_study(synthetic_db, n_boot=5)
    figs = build_figures(analysis)
    assert set(figs) == {"curves-val_loss", "curves-mc_acc", "law-fit", "critical-compute"}
    assert all(isinstance(f, go.Figure) and len(f.data) > 0 for f in figs.values())
    # Three sizes x two budgets: one panel each, AR and DLM points and fitted lines in every one.
    assert len(figs["curves-val_loss"].layout.annotations) == 6
    assert set(analysis.law_fits) == {"ar", "dlm"}
    ar, dlm = (analysis.law_fits[o].estimates["rd_star"] for o in ("ar", "dlm"))
    assert ar.identified and dlm.identified and dlm.value > ar.value


def test_report_on_demo_shaped_study(tmp_path: Path) -> None:
    """One run per objective and budget, evaluated every 3 epochs (the demo preset's shape):
    crossovers come from the curves along each run; one model size identifies no law parameter,
    and the report says so without printing a number for any of them."""
    study = tmp_path / "demo"
    epochs = np.arange(3, 49, 3.0)
    for u, best_at in ((25_000, 9.0), (100_000, 6.0)):
        ar = 5.0 + 0.9 * np.log(epochs / best_at) ** 2  # overfits after best_at
        dlm = 6.5 - 0.3 * np.log(epochs / 3)
        for obj, loss in (("ar", ar), ("dlm", dlm)):
            rows = [
                (10 * (i + 1), e, v, 0.3) for i, (e, v) in enumerate(zip(epochs, loss, strict=True))
            ]
            make_run(study, f"{obj}-{u}", obj, 48.0, 0, rows, unique_tokens=u)
    with ResultsStore(study / "results.duckdb") as store:
        store.ingest_runs_root(study / "runs")
    path = write_report(study / "results.duckdb", tmp_path / "out", n_boot=5, png=False)
    outline, text = _outline(path)
    assert set(outline.sections) == SECTIONS
    assert "crossover" in text and "0 [0, 0]" not in text
    assert "1 model size(s), need &gt;= 3" in text and "identifies no law parameter" in text
    assert "No recommendation: ar: stage 1 (A, alpha, E) not identified" in text  # planner
    analysis = analyze_study(study / "results.duckdb", n_boot=5)
    loss_rows = analysis.crossovers[analysis.crossovers["metric"] == "val_loss"]
    assert (loss_rows["status"] == "crossover").all() and (loss_rows["mode"] == "curve").all()


def test_report_write_is_atomic(
    small_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import analysis.report as report

    with ResultsStore(small_study / "results.duckdb") as store:
        store.ingest_runs_root(small_study / "runs")
    out = tmp_path / "report"
    path = write_report(store, out, n_boot=5, png=False)
    before = path.read_bytes()

    def full_disk_midway(self: Path, text: str, *args: object, **kwargs: object) -> int:
        with open(self, "w", encoding="utf-8") as handle:
            handle.write(text[: len(text) // 2])  # the disk fills halfway through
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(report.Path, "write_text", full_disk_midway)
    with pytest.raises(OSError):
        write_report(store, out, n_boot=5, png=False)
    assert path.read_bytes() == before  # the previous report is whole
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no temp left behind
