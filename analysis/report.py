"""Plotly report: figure builders return figures; ``write_report`` alone writes files.

The HTML is self-contained and works offline: plotly.js is inlined once in the page head and
every figure is embedded without it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analysis.adaptive_loop import adaptive_display, read_adaptive_steps
from analysis.crossover_store import N_BOOT
from analysis.fits import LawFit
from analysis.frontier_table import frontier_display
from analysis.planner_report import plan_section
from analysis.report_figures import build_figures
from analysis.report_png import export_png, find_chromium, png_unavailable_reason
from analysis.store import ResultsStore
from analysis.study import StudyAnalysis, analyze_study
from analysis.summary import interval_text

__all__ = [
    "build_figures",
    "export_png",
    "find_chromium",
    "png_unavailable_reason",
    "render_html",
    "write_report",
]

RUN_COLUMNS = [
    "run_id",
    "status",
    "failure_reason",
    "objective",
    "model_name",
    "unique_tokens",
    "epochs",
    "seed",
    "final_val_loss",
    "best_val_loss",
    "final_mc_acc",
    "wall_s",
]


def law_params_table(fits: dict[str, LawFit]) -> pd.DataFrame:
    """One row per objective: each parameter as 'value [lo, hi]' (95%, hull of bootstrap and
    profile likelihood), a one-sided bound, or 'not identified: <why>'; never a number for a
    parameter the design cannot pin."""
    rows = []
    for obj, fit in fits.items():
        row = {"objective": obj, "n_points": fit.n_points}
        row["R2"] = f"{fit.r2:.4f}" if fit.params is not None else "no fit"
        row |= {name: e.describe() for name, e in fit.estimates.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _table_html(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f"<p>{html.escape(empty)}</p>"
    return frame.to_html(index=False, na_rep="—", float_format=lambda x: f"{x:.4g}", border=0)


def _fig_html(figs: dict[str, go.Figure], key: str, missing: str) -> str:
    fig = figs.get(key)
    if fig is None:
        return f"<p>{html.escape(missing)}</p>"
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}")


def render_html(
    analysis: StudyAnalysis,
    figs: dict[str, go.Figure],
    title: str,
    adaptive_steps: pd.DataFrame | None = None,
) -> str:
    """The whole report page as a string (plotly.js inlined once, in the head)."""
    if analysis.empty:
        body = _section(
            "empty",
            "Empty study",
            "<p>This study has no runs yet: nothing to "
            "analyse. Run the sweep, ingest, and build the report again.</p>",
        )
        return _page(title, body, with_js=False)
    notes = "".join(f"<li>{html.escape(p)}</li>" for p in analysis.notes)
    status = ", ".join(f"{k} {v}" for k, v in analysis.runs["status"].value_counts().items())
    excluded = analysis.excluded
    n_excl = (
        int(excluded[["from_failed_run", "nonfinite"]].to_numpy().sum()) if len(excluded) else 0
    )
    div = analysis.divergence
    flagged = div[div["flagged"]] if not div.empty else div
    overview = (
        f"<p>Runs: {html.escape(status)}. Evaluations excluded from analysis (failed runs or "
        f"non-finite loss): {n_excl}. Runs whose validation loss rises while accuracy still "
        f"improves: {len(flagged)}.</p>" + (f"<ul class='notes'>{notes}</ul>" if notes else "")
    )
    parts = [
        _section("overview", "Overview", overview),
        _section(
            "curves",
            "Loss and accuracy vs epochs",
            _fig_html(figs, "curves-val_loss", "no data")
            + _fig_html(figs, "curves-mc_acc", "no data"),
        ),
        _section(
            "crossovers",
            "Crossover table (DLM overtakes AR)",
            _table_html(_crossover_display(analysis.crossovers), "no crossover analysis"),
        ),
        _section(
            "law-fits",
            "Fitted law over observed points, with residuals",
            _fig_html(figs, "law-fit", "no law fit: see overview"),
        ),
        _section(
            "law-params",
            "R_D* and R_N* per objective",
            _table_html(law_params_table(analysis.law_fits), "no law fit: see overview"),
        ),
        _section(
            "critical-compute",
            "Critical compute C_crit(U)",
            _fig_html(figs, "critical-compute", "no crossovers")
            + _table_html(_power_law_table(analysis), "no C_crit(U) fit: see overview"),
        ),
        plan_section(analysis),
        _section(
            "frontier",
            "C_crit on the compute-optimal frontier",
            FRONTIER_TEXT + _table_html(frontier_display(analysis.frontier), "no law fits"),
        ),
        _section(
            "divergence",
            "Validation loss rises while accuracy still improves",
            _table_html(flagged, "no run shows this pattern"),
        ),
        *(
            [
                _section(
                    "adaptive",
                    "Adaptive sweep decisions (DuckDB adaptive_steps)",
                    _table_html(adaptive_display(adaptive_steps), "no decisions"),
                )
            ]
            if adaptive_steps is not None
            else []
        ),
        _section(
            "runs",
            "Runs (including failures)",
            _table_html(analysis.runs.reindex(columns=RUN_COLUMNS), "no runs"),
        ),
    ]
    return _page(title, "".join(parts), with_js=True)


FRONTIER_TEXT = (
    "<p>Per budget U, the compute beyond which the DLM's compute-optimal loss (the fitted law "
    "minimised over model size and epochs at that compute) stays below AR's; each objective's "
    "compute is C = k N D with its own FLOPs per token per parameter k (as its runs count "
    "them). Needs both laws fully identified (>= 3 model sizes); 'extrapolated' rows lie "
    "outside the sizes, epochs or compute the study measured.</p>"
)


def _crossover_display(table: pd.DataFrame) -> pd.DataFrame:
    """The crossover table with its interval spelled out beside the numbers: open edges,
    P(crossover) and what the interval includes (the seed spread it drew, or why it is not
    identified)."""
    if table.empty or "epoch_lo" not in table:
        return table
    shown = table.drop(columns="evals_sha256", errors="ignore")
    shown.insert(4, "interval", [interval_text(r) for _, r in table.iterrows()])
    return shown


def _power_law_table(analysis: StudyAnalysis) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "source": f.source,
                "k": f.k,
                "b": f.b,
                "b_lo": f.b_interval[0],
                "b_hi": f.b_interval[1],
                "n_budgets": f.n_budgets,
            }
            for f in analysis.critical_compute
        ]
    )


def _page(title: str, body: str, with_js: bool) -> str:
    js = f'<script type="text/javascript">{get_plotlyjs()}</script>' if with_js else ""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}"
        "table{border-collapse:collapse;font-size:12px}td,th{padding:2px 6px;"
        "border-bottom:1px solid #ddd}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style>{js}</head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )


def write_report(
    db: str | Path | ResultsStore, out_dir: str | Path, *, n_boot: int = N_BOOT, png: bool = True
) -> Path:
    """Analyse the store and write ``out_dir/report.html`` (plus ``crossover.png`` if possible)."""
    store = db if isinstance(db, ResultsStore) else ResultsStore(db)
    analysis = analyze_study(store, n_boot=n_boot)
    figs = build_figures(analysis)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    studies = analysis.runs["study"].dropna().unique() if not analysis.empty else []
    title = f"AR vs DLM crossover report: {', '.join(map(str, studies)) or store.db_path.stem}"
    if png and "curves-val_loss" in figs:
        analysis.notes.append(export_png(figs["curves-val_loss"], out / "crossover.png"))
    path = out / "report.html"
    # A full disk or a kill mid-write leaves the previous report whole: write aside, then swap.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        html_text = render_html(analysis, figs, title, read_adaptive_steps(store))
        tmp.write_text(html_text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
