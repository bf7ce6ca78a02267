"""Report figures: pure builders from a ``StudyAnalysis`` to Plotly figures (no files)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.crossover import METRICS, OBJECTIVES, curve_points
from analysis.curves import fit_smooth_curve
from analysis.study import StudyAnalysis, law_points

COLORS = {"ar": "#1f77b4", "dlm": "#d62728"}
METRIC_LABELS = {"val_loss": "validation loss", "mc_acc": "MC accuracy"}


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
