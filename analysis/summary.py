"""Terminal view of a study: the crossover table and a few readable lines about it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.crossover import crossovers
from analysis.store import ResultsStore


def crossover_table(
    db: str | Path | ResultsStore, *, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Per (model_name, unique_tokens, metric): status, epoch and FLOPs of the crossover with
    bootstrap intervals. Raises ``AnalysisError`` naming what is missing when nothing is usable."""
    store = db if isinstance(db, ResultsStore) else ResultsStore(db)
    evals = store.query("SELECT * FROM eval_points ORDER BY run_id, step")
    return crossovers(evals, n_boot=n_boot, seed=seed)


def _interval(lo: float, hi: float, fmt: str) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{lo:{fmt}}, {hi:{fmt}}]"


def _describe(row: pd.Series) -> str:
    status = row["status"]
    if status == "crossover":
        flops = (
            f", {row['flops']:.3g} FLOPs{_interval(row['flops_lo'], row['flops_hi'], '.3g')}"
            if math.isfinite(row["flops"])
            else ""
        )
        return (
            f"DLM overtakes AR after {row['epoch']:.3g} epochs"
            f"{_interval(row['epoch_lo'], row['epoch_hi'], '.3g')}{flops}"
        )
    span = f"epochs {row.get('epoch_min', math.nan):.3g}-{row.get('epoch_max', math.nan):.3g}"
    if status == "no_crossover":
        return f"no crossover in the measured range ({span}): AR still better at the end"
    if status == "dlm_ahead_throughout":
        return f"no crossover in the measured range ({span}): DLM better throughout"
    return f"insufficient data: {row.get('note', '')}"


def format_summary(table: pd.DataFrame, runs: pd.DataFrame | None = None) -> str:
    """Readable lines, one per (model, budget, metric), plus run counts when ``runs`` is given."""
    lines = []
    if runs is not None and not runs.empty:
        counts = runs["status"].value_counts().to_dict()
        lines.append("runs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if table.empty:
        lines.append("no crossover analysis: no usable runs")
    for _, row in table.iterrows():
        lines.append(
            f"{row['model_name']} U={row['unique_tokens']:.3g} {row['metric']}: {_describe(row)}"
        )
    return "\n".join(lines)
