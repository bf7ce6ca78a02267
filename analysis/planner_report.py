"""The plan as text (terminal), rows (Prefect table artifact), a figure and a report section.

All builders are pure: they take a ``Plan`` / grid frames and return text, rows or a figure.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.planner import (
    FLOPS_PER_PARAM_TOKEN,
    TOO_CLOSE,
    LawSet,
    Plan,
    critical_compute_band,
    make_plan,
    plan_grid,
)

CONVENTION = (
    f"compute convention: C = {FLOPS_PER_PARAM_TOKEN:g} N D for both objectives "
    "(N parameters, D training tokens)"
)
VERDICT_TEXT = {"ar": "train AR", "dlm": "train the DLM"}


def _iv(lo: float | None, hi: float | None, fmt: str = ".4f") -> str:
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "[interval unknown]"
    return f"[{lo:{fmt}}, {hi:{fmt}}]"


def format_plan(plan: Plan) -> str:
    """The terminal answer: verdict first, then each objective's best option with its interval."""
    pct = f"{100 * plan.confidence:g}%"
    lines = [
        f"plan for U = {plan.unique_tokens:.3g} unique tokens, C = {plan.compute:.3g} FLOPs",
        f"laws: {plan.source}",
    ]
    if plan.verdict.startswith("not identified"):
        lines.append(f"no recommendation: {plan.verdict}")
        return "\n".join(lines + [f"note: {n}" for n in plan.notes])
    rec = plan.recommended
    if rec:
        lines.append(
            f"recommendation: {VERDICT_TEXT[rec.objective]}, N = {rec.n_params:.3g} parameters, "
            f"{rec.epochs:.3g} epochs ({rec.tokens:.3g} tokens)"
        )
    elif plan.verdict == TOO_CLOSE:
        lines.append(
            f"recommendation: {TOO_CLOSE} at {pct} confidence: neither objective is reliably "
            "better here"
        )
    else:
        lines.append(f"recommendation: none ({plan.verdict})")
    lines.append(f"{'objective':<10}{'N':>10}{'epochs':>10}{'tokens':>10}  predicted loss ({pct})")
    for o in plan.options.values():
        lines.append(
            f"{o.objective:<10}{o.n_params:>10.3g}{o.epochs:>10.3g}{o.tokens:>10.3g}  "
            f"{o.loss:.4f} {_iv(o.loss_lo, o.loss_hi)}"
        )
    lines.append(
        f"DLM - AR best loss: {plan.diff:+.4f} {_iv(plan.diff_lo, plan.diff_hi, '+.4f')}, "
        f"P(DLM better) {plan.p_dlm_better:.2f} over {plan.n_draws} draws"
        if plan.p_dlm_better is not None
        else f"DLM - AR best loss: {plan.diff:+.4f} [interval unknown: no draws]"
    )
    lines.append(CONVENTION)
    return "\n".join(lines + [f"note: {n}" for n in plan.notes])


def plan_rows(plan: Plan) -> list[dict[str, Any]]:
    """One artifact row per objective (or one row saying why there is no plan)."""
    head = {
        "unique tokens": f"{plan.unique_tokens:.3g}",
        "compute (FLOPs)": f"{plan.compute:.3g}",
        "verdict": plan.verdict,
    }
    if not plan.options:
        return [head | {"laws": plan.source}]
    rows = []
    for o in plan.options.values():
        rows.append(
            head
            | {
                "objective": o.objective,
                "N": f"{o.n_params:.3g}",
                "epochs": f"{o.epochs:.3g}",
                "predicted loss": f"{o.loss:.4f}",
                f"{100 * plan.confidence:g}% interval": _iv(o.loss_lo, o.loss_hi),
                "DLM - AR": f"{plan.diff:+.4f} {_iv(plan.diff_lo, plan.diff_hi, '+.4f')}",
                "P(DLM better)": None if plan.p_dlm_better is None else f"{plan.p_dlm_better:.2f}",
                "laws": plan.source,
            }
        )
    return rows


def region_figure(grid: pd.DataFrame, band: pd.DataFrame, title: str) -> go.Figure:
    """Verdict over (U, C) as coloured cells, C_crit(U) as a line with its band shaded."""
    colours = {"dlm": "#d62728", "ar": "#1f77b4"}
    fig = go.Figure()
    for verdict, rows in grid.groupby(grid["verdict"].where(grid["verdict"].isin(colours), "tie")):
        fig.add_trace(
            go.Scatter(
                x=rows["unique_tokens"],
                y=rows["compute"],
                mode="markers",
                marker={"symbol": "square", "size": 9, "color": colours.get(verdict, "#bbbbbb")},
                name={"dlm": "DLM better", "ar": "AR better"}.get(verdict, "too close to call"),
                customdata=np.stack([rows["diff"], rows["diff_lo"], rows["diff_hi"]], axis=1),
                hovertemplate="U %{x:.3g}, C %{y:.3g}<br>DLM - AR %{customdata[0]:+.4f} "
                "[%{customdata[1]:+.4f}, %{customdata[2]:+.4f}]<extra></extra>",
            )
        )
    finite = band[np.isfinite(band["c_crit"]) & (band["c_crit"] > 0)]
    top = float(grid["compute"].max())
    hi = band["c_hi"].where(np.isfinite(band["c_hi"]), top)
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([band["unique_tokens"], band["unique_tokens"][::-1]]),
            y=np.concatenate([band["c_lo"].clip(lower=grid["compute"].min()), hi[::-1]]),
            fill="toself",
            fillcolor="rgba(0,0,0,0.12)",
            line={"width": 0},
            name="C_crit band (open above where draws never cross)",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=finite["unique_tokens"],
            y=finite["c_crit"],
            mode="lines",
            line={"color": "black", "dash": "dash"},
            name="C_crit(U): DLM's best beats AR's best above",
        )
    )
    fig.update_xaxes(type="log", title_text="unique tokens U")
    fig.update_yaxes(type="log", title_text="compute C (FLOPs, C = 6 N D)")
    fig.update_layout(title=title, height=520, template="plotly_white")
    return fig


def region(
    laws: LawSet,
    u_range: tuple[float, float],
    c_range: tuple[float, float],
    confidence: float = 0.95,
    n: int = 15,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(grid of verdicts, C_crit band) over log-spaced U and C in the given ranges."""
    u = np.geomspace(*u_range, n)
    c = np.geomspace(*c_range, n)
    band = critical_compute_band(laws, u, c_range, confidence=confidence)
    return plan_grid(laws, u, c, confidence), band


def band_table(band: pd.DataFrame) -> pd.DataFrame:
    """C_crit(U) with its band as text ('not within the range' rather than NaN)."""

    def text(x: float) -> str:
        if math.isnan(x):
            return "not within the range"
        if math.isinf(x):
            return "beyond the range"
        return "below the range" if x == 0 else f"{x:.3g}"

    return pd.DataFrame(
        {
            "unique tokens": band["unique_tokens"].map(lambda x: f"{x:.3g}"),
            "C_crit (FLOPs)": band["c_crit"].map(text),
            "band lo": band["c_lo"].map(text),
            "band hi": band["c_hi"].map(text),
            "P(cross within range)": band["p_cross"].map(
                lambda x: "—" if math.isnan(x) else f"{x:.2f}"
            ),
        }
    )


def plan_section(analysis: Any) -> str:
    """The report's planner section for a ``StudyAnalysis``: the plan at each measured budget at
    the largest compute a run spent, the verdict region and C_crit(U) around the study's range,
    or why no plan can be made."""
    from analysis.planner_laws import laws_from_fits

    body = _plan_body(analysis, laws_from_fits(analysis.law_fits, "this study's fitted laws"))
    return f'<section id="plan"><h2>Planner: AR or DLM at (U, C)</h2>\n{body}\n</section>\n'


def _plan_body(analysis: Any, laws: LawSet) -> str:
    blocked = laws.blocked()
    if blocked or analysis.runs.empty:
        why = "; ".join(blocked) or "no runs"
        return f"<p>No recommendation: {html.escape(why)}.</p>"
    runs = analysis.runs[analysis.runs["status"] == "completed"]
    budgets = sorted(runs["unique_tokens"].astype(float).unique())
    c_max = float((6.0 * runs["n_params"] * runs["unique_tokens"] * runs["epochs"]).max())
    plans = [make_plan(laws, u, c_max, 0.95) for u in budgets]
    rows = pd.DataFrame([r for p in plans for r in plan_rows(p)])
    grid, band = region(laws, (budgets[0] / 10, budgets[-1] * 10), (c_max / 1e3, c_max * 1e3))
    fig = region_figure(grid, band, "Where the DLM's best run beats AR's (95%)")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in (*laws.notes, CONVENTION))
    return (
        f"<p>Plans at each budget at C = {c_max:.3g} FLOPs (the largest run of the study).</p>"
        + rows.to_html(index=False, border=0)
        + fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-plan")
        + band_table(band).to_html(index=False, border=0)
        + f"<ul class='notes'>{notes}</ul>"
    )


def region_text(grid: pd.DataFrame) -> str:
    """The verdict grid as a text table: rows U, columns C; DLM / AR / '~' (too close)."""
    mark = {"dlm": "DLM", "ar": "AR"}
    table = grid.assign(
        cell=grid["verdict"].map(lambda v: mark.get(v, "~")),
        U=grid["unique_tokens"].map(lambda x: f"{x:.2g}"),
        C=grid["compute"].map(lambda x: f"{x:.2g}"),
    ).pivot(index="U", columns="C", values="cell")
    order_u = sorted(table.index, key=float)
    order_c = sorted(table.columns, key=float)
    return table.loc[order_u, order_c].to_string() + "\n(~: too close to call)"
