"""Terminal view of a study: the crossover table and a few readable lines about it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.crossover_store import BOOT_SEED, N_BOOT, current_crossovers
from analysis.store import ResultsStore


def crossover_table(
    db: str | Path | ResultsStore, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED
) -> pd.DataFrame:
    """The store's ``crossovers`` table (computed and stored first when missing or stale): per
    (model_name, unique_tokens, metric), status, epoch and FLOPs of the crossover with bootstrap
    intervals, P(crossover) and ``n_boot``, the same rows the report and SQL show. Raises
    ``AnalysisError`` naming what is missing when nothing is usable."""
    store = db if isinstance(db, ResultsStore) else ResultsStore(db)
    return current_crossovers(store, n_boot=n_boot, seed=seed)


def _bound(x: float, fmt: str, lo_edge: float, hi_edge: float) -> str:
    if math.isinf(x):
        return f"beyond {hi_edge:{fmt}} (not crossed)"
    if x <= 0:
        return f"before {lo_edge:{fmt}}"
    return f"{x:{fmt}}"


def interval_text(row: pd.Series, fmt: str = ".3g") -> str:
    """'95% [lo, hi], P(crossover) p; basis' with open edges spelled out, '95% interval not
    identified: why' when the data do not pin the run-to-run spread, or 'interval unknown'
    when no draw was made: never a zero-width stand-in."""
    lo, hi = row.get("epoch_lo", math.nan), row.get("epoch_hi", math.nan)
    p = row.get("p_crossover", math.nan)
    identified = row.get("interval_identified", True)
    if not (pd.isna(identified) or bool(identified)):
        return f"95% interval {row.get('interval_basis', 'not identified')}"
    if math.isnan(lo) or math.isnan(hi):
        return "interval unknown (no bootstrap draws)"
    e0, e1 = row.get("epoch_min", math.nan), row.get("epoch_max", math.nan)
    basis = row.get("interval_basis", "")
    draws = float(row.get("n_boot", math.nan))
    basis += f", {draws:.0f} draws" if draws > 0 else ""  # NaN > 0 is False
    return (
        f"95% [{_bound(lo, fmt, e0, e1)}, {_bound(hi, fmt, e0, e1)}], P(crossover) {p:.2f}; {basis}"
    )


def _describe(row: pd.Series) -> str:
    status = row["status"]
    span = f"epochs {row.get('epoch_min', math.nan):.3g}-{row.get('epoch_max', math.nan):.3g}"
    if status == "crossover":
        flops = f", {row['flops']:.3g} DLM FLOPs" if math.isfinite(row["flops"]) else ""
        return f"DLM overtakes AR after {row['epoch']:.3g} epochs{flops} ({interval_text(row)})"
    if status == "no_crossover":
        return (
            f"no crossover in the measured range ({span}): AR still better at the end "
            f"({interval_text(row)})"
        )
    if status == "dlm_ahead_throughout":
        return (
            f"no crossover in the measured range ({span}): DLM better throughout "
            f"({interval_text(row)})"
        )
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
