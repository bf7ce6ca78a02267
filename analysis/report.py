"""Plotly report: figure builders return figures; ``write_report`` alone writes files.

The HTML is self-contained and works offline: plotly.js is inlined once in the page head and
every figure is embedded without it.
"""

from __future__ import annotations

import html
import importlib.util
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from analysis.adaptive_loop import adaptive_display, read_adaptive_steps
from analysis.crossover import METRICS, OBJECTIVES, curve_points
from analysis.crossover_store import N_BOOT
from analysis.curves import fit_smooth_curve
from analysis.fits import LawFit
from analysis.frontier_table import frontier_display
from analysis.planner_report import plan_section
from analysis.store import ResultsStore
from analysis.study import StudyAnalysis, analyze_study, law_points
from analysis.summary import interval_text

COLORS = {"ar": "#1f77b4", "dlm": "#d62728"}
METRIC_LABELS = {"val_loss": "validation loss", "mc_acc": "MC accuracy"}
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


def _marker_rows(table: pd.DataFrame, model: str, u: int, metric: str) -> pd.DataFrame:
    if table.empty:
        return table
    return table[
        (table["model_name"] == model)
        & (table["unique_tokens"] == u)
        & (table["metric"] == metric)
        & (table["status"] == "crossover")
    ]


def curves_figure(analysis: StudyAnalysis, metric: str) -> go.Figure:
    """Metric vs epochs, one panel per (model, budget), AR and DLM overlaid with smooth fits,
    crossover epoch as a dashed line with its bootstrap interval shaded."""
    groups = list(analysis.evals.groupby(["model_name", "unique_tokens"], sort=True))
    titles = [f"{m} · U={u:.3g}" for (m, u), _ in groups] or ["no data"]
    fig = make_subplots(rows=1, cols=max(len(groups), 1), subplot_titles=titles, shared_yaxes=True)
    for col, ((model, u), group) in enumerate(groups, start=1):
        points, mode = curve_points(group, metric)
        for obj in OBJECTIVES:
            pts = points[points["objective"] == obj]
            if pts.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=pts["epoch"],
                    y=pts["y"],
                    mode="markers",
                    name=f"{obj} ({mode})",
                    legendgroup=obj,
                    showlegend=col == 1,
                    marker={"color": COLORS[obj]},
                    error_y={"type": "data", "array": pts["se"], "visible": True},
                ),
                row=1,
                col=col,
            )
            if pts["epoch"].nunique() >= 2:
                curve = fit_smooth_curve(pts["epoch"].to_numpy(), pts["y"].to_numpy())
                grid = np.geomspace(*curve.epoch_range, 100)
                fig.add_trace(
                    go.Scatter(
                        x=grid,
                        y=curve(grid),
                        mode="lines",
                        showlegend=False,
                        legendgroup=obj,
                        line={"color": COLORS[obj]},
                    ),
                    row=1,
                    col=col,
                )
        for _, row in _marker_rows(analysis.crossovers, model, int(u), metric).iterrows():
            if not (math.isnan(row["epoch_lo"]) or math.isnan(row["epoch_hi"])):
                # Open edges (draws that never cross) shade to the end of the measured range.
                fig.add_vrect(
                    x0=max(row["epoch_lo"], row["epoch_min"]),
                    x1=min(row["epoch_hi"], row["epoch_max"]),
                    fillcolor="gray",
                    opacity=0.2,
                    line_width=0,
                    row=1,
                    col=col,
                )
            fig.add_vline(x=row["epoch"], line_dash="dash", row=1, col=col)
    fig.update_xaxes(type="log", title_text="epochs")
    fig.update_yaxes(title_text=METRIC_LABELS[metric], col=1)
    fig.update_layout(
        title=f"{METRIC_LABELS[metric]} vs epochs: AR vs DLM per budget",
        height=420,
        template="plotly_white",
    )
    return fig


def law_fit_figure(analysis: StudyAnalysis) -> go.Figure:
    """Observed loss vs tokens with the fitted law (top) and relative residuals (bottom)."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.7, 0.3],
        subplot_titles=["data-constrained law fit", "residual (obs/fit - 1)"],
    )
    for obj, fit in analysis.law_fits.items():
        if fit.params is None:
            continue
        points = law_points(analysis.evals, obj)
        pred = fit.predict(points)
        fig.add_trace(
            go.Scatter(
                x=points["tokens"],
                y=points["loss"],
                mode="markers",
                name=f"{obj} observed",
                marker={"color": COLORS[obj]},
            ),
            row=1,
            col=1,
        )
        for (n, u), rows in points.groupby(["n_params", "unique_tokens"]):
            d = np.geomspace(rows["tokens"].min(), rows["tokens"].max(), 60)
            grid = pd.DataFrame({"n_params": n, "tokens": d, "unique_tokens": u})
            fig.add_trace(
                go.Scatter(
                    x=d,
                    y=fit.predict(grid),
                    mode="lines",
                    showlegend=False,
                    line={"color": COLORS[obj], "width": 1},
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=points["tokens"],
                y=points["loss"] / pred - 1,
                mode="markers",
                name=f"{obj} residual",
                marker={"color": COLORS[obj], "symbol": "x"},
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(type="log", title_text="tokens seen", row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_layout(height=600, template="plotly_white")
    return fig


def critical_compute_figure(analysis: StudyAnalysis) -> go.Figure:
    """C_crit vs U: measured crossovers with intervals, the law-based ones, and power-law fits."""
    fig = go.Figure()
    table = analysis.crossovers
    if not table.empty:
        for metric, rows in table[table["status"] == "crossover"].groupby("metric"):
            fig.add_trace(
                go.Scatter(
                    x=rows["unique_tokens"],
                    y=rows["flops"],
                    mode="markers",
                    name=f"measured ({metric})",
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        # Open upper edges are drawn to 10x (the table says "not crossed").
                        "array": np.fmin(rows["flops_hi"], 10 * rows["flops"]) - rows["flops"],
                        "arrayminus": rows["flops"] - rows["flops_lo"],
                    },
                )
            )
    if not analysis.law_crossovers.empty:
        lc = analysis.law_crossovers
        for beyond, name, symbol in (
            (False, "from fitted laws (within measured epochs)", "diamond"),
            (True, "from fitted laws (extrapolated)", "diamond-open"),
        ):
            part = lc[lc["beyond_measured"] == beyond]
            if part.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["unique_tokens"],
                    y=part["flops"],
                    mode="markers",
                    name=name,
                    marker={"symbol": symbol},
                )
            )
    _frontier_markers(fig, analysis.frontier)
    for fit in analysis.critical_compute:
        lo, hi = fit.b_interval
        u = np.geomspace(*_u_range(analysis), 50)
        fig.add_trace(
            go.Scatter(
                x=u,
                y=fit(u),
                mode="lines",
                name=f"{fit.source}: b={fit.b:.2f} [{lo:.2f}, {hi:.2f}]",
            )
        )
    fig.update_xaxes(type="log", title_text="unique tokens U")
    fig.update_yaxes(type="log", title_text="critical compute C_crit (FLOPs)")
    fig.update_layout(title="C_crit(U) = k U^b", height=450, template="plotly_white")
    return fig


def _frontier_markers(fig: go.Figure, table: pd.DataFrame) -> None:
    """Frontier C_crit per budget (``analysis.frontier_table``), extrapolated ones hollow."""
    if table.empty:
        return
    for beyond, name, symbol in ((False, "", "star"), (True, " (extrapolated)", "star-open")):
        part = table[(table["status"] == "crossover") & (table["extrapolated"] == beyond)]
        if part.empty:
            continue
        hi = np.fmin(part["compute_hi"], 10 * part["compute"]).fillna(part["compute"])
        lo = part["compute_lo"].fillna(part["compute"])
        fig.add_trace(
            go.Scatter(
                x=part["unique_tokens"],
                y=part["compute"],
                mode="markers",
                name=f"compute-optimal frontier{name}",
                marker={"symbol": symbol, "size": 10},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": hi - part["compute"],
                    "arrayminus": part["compute"] - lo,
                },
            )
        )


def _u_range(analysis: StudyAnalysis) -> tuple[float, float]:
    u = analysis.evals["unique_tokens"].astype(float)
    return float(u.min()), float(u.max())


def build_figures(analysis: StudyAnalysis) -> dict[str, go.Figure]:
    """Every figure of the report by section id (empty for an empty study)."""
    if analysis.empty or analysis.evals.empty:
        return {}
    figs = {f"curves-{m}": curves_figure(analysis, m) for m in METRICS}
    if any(f.params is not None for f in analysis.law_fits.values()):
        figs["law-fit"] = law_fit_figure(analysis)
    figs["critical-compute"] = critical_compute_figure(analysis)
    return figs


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
    P(crossover) and what the interval includes (seeds, or evaluation noise only)."""
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


def find_chromium() -> str | None:
    """A Chromium/Chrome binary kaleido can drive, or None (PNG export is then skipped)."""
    if os.environ.get("BROWSER_PATH") and Path(os.environ["BROWSER_PATH"]).exists():
        return os.environ["BROWSER_PATH"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def png_unavailable_reason() -> str | None:
    """Why no PNG can be made here (no Chromium for kaleido or a headless screenshot), or None."""
    if find_chromium() is None:
        return "no Chromium on this machine (install chromium or set BROWSER_PATH)"
    return None


def _screenshot_png(fig: go.Figure, path: Path, chromium: str) -> None:
    """Render ``fig`` with headless Chromium alone (no kaleido): a standalone page, screenshot."""
    width, height = int(fig.layout.width or 1300), int(fig.layout.height or 560)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "figure.html"
        fig.write_html(str(page), include_plotlyjs=True, config={"displayModeBar": False})
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp}", f"--screenshot={path}",
               f"--window-size={width + 20},{height + 20}", "--virtual-time-budget=15000",
               page.as_uri()]  # fmt: skip
        subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no image to {path}")


def export_png(fig: go.Figure, path: Path) -> str:
    """Write ``fig`` as PNG (kaleido when installed, else a headless Chromium screenshot).

    Returns what happened; a failure never loses the HTML report.
    """
    if (reason := png_unavailable_reason()) is not None:
        return f"PNG export skipped: {reason}"
    try:
        if importlib.util.find_spec("kaleido") is not None:
            fig.write_image(str(path))
        else:
            _screenshot_png(fig, path, find_chromium() or "chromium")
    except Exception as err:  # kaleido/Chromium failures must not lose the HTML report
        return f"PNG export failed: {err}"
    return f"PNG written: {path}"


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
