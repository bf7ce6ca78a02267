"""What a study shows in the Prefect UI: its answer as artifacts, its progress in the flow log.

Row builders are pure functions (tests call them directly); the tasks below only read what the
study wrote (the DuckDB ``crossovers`` table, each run's result.json) and publish:

- ``crossovers-<study>``: table of the crossover per (model, budget, metric): epoch, 95% interval,
  P(crossover), DLM FLOPs, bootstrap draws: the rows of DuckDB's ``crossovers`` table, which the
  terminal and the report also show (analysis/crossover_store.py);
- ``runs-<study>``: table of the grid's runs: status, failure reason, tokens/s;
- ``report-<study>``: a link to report.html, and ``results-<study>``: markdown naming the report
  and the DuckDB file with a query to start from.

Each grid point also gets a task run named by its label (``dlm/xs/25K/ep96/s0``) whose state is
the run's outcome (Failed with its reason, Completed, or Completed "already done").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.states import Completed, Failed, State

from flows.dispatch import GridProgress, format_progress, read_status
from flows.run_task import RunOutcome

MAX_REASON_CHARS = 300  # a traceback's last line fits; the full text is in the run's result.json


def artifact_key(kind: str, study: str) -> str:
    """``kind-study`` in what Prefect accepts as a key: lowercase letters, digits and dashes."""
    raw = f"{kind}-{study}".lower()
    return "-".join(filter(None, "".join(c if c.isalnum() else "-" for c in raw).split("-")))


def _num(x: Any, fmt: str = ".3g") -> str | None:
    """A number as text (JSON has no NaN or inf); None when missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x):
        return None
    return "inf" if math.isinf(float(x)) else f"{float(x):{fmt}}"


def _interval(lo: Any, hi: Any, e0: Any, e1: Any) -> str | None:
    """'[lo, hi]' with open edges spelled out (0: DLM ahead from the start, inf: not crossed)."""
    if _num(lo) is None or _num(hi) is None:
        return None

    def edge(x: float) -> str:
        if math.isinf(x):
            return f"beyond {float(e1):.3g}" if math.isfinite(float(e1)) else "beyond the range"
        if x <= 0:
            return f"before {float(e0):.3g}" if float(e0) > 0 else "before the range"
        return f"{x:.3g}"

    return f"[{edge(float(lo))}, {edge(float(hi))}]"


def crossover_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One artifact row per crossover-table row (analysis.crossover_store's columns)."""
    rows = []
    for _, r in table.iterrows():
        rows.append(
            {
                "model": r["model_name"],
                "unique tokens": int(r["unique_tokens"]),
                "metric": r["metric"],
                "status": r["status"],
                "DLM overtakes AR at epoch": _num(r.get("epoch")),
                "95% interval (epochs)": _interval(
                    r.get("epoch_lo"), r.get("epoch_hi"), r.get("epoch_min"), r.get("epoch_max")
                ),
                "P(crossover)": _num(r.get("p_crossover"), ".2f"),
                "DLM FLOPs at crossover": _num(r.get("flops")),
                "FLOPs interval": _interval(r.get("flops_lo"), r.get("flops_hi"), 0.0, math.inf),
                "bootstrap draws": None if pd.isna(r.get("n_boot")) else int(r["n_boot"]),
                "basis": r.get("interval_basis") or r.get("note") or None,
            }
        )
    return rows


def run_rows(
    outcomes: Sequence[RunOutcome], results: dict[str, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """One row per grid run: the outcome of this sweep, throughput from its result.json
    (``results[run_id]``, None when the run wrote none)."""
    rows = []
    for o in outcomes:
        result = results.get(o.run_id) or {}
        reason = o.reason or result.get("failure_reason") or ""
        rows.append(
            {
                "run": o.label,
                "run id": o.run_id,
                "status": "already done" if o.status == "skipped" else o.status,
                "failure reason": reason[:MAX_REASON_CHARS] or None,
                "tokens/s": _num(result.get("tokens_per_s"), ".4g"),
                "tokens": result.get("tokens_seen", o.tokens_seen or None),
                "wall s": _num(result.get("wall_s"), ".4g"),
                "final val loss": _num(result.get("final_val_loss"), ".4g"),
            }
        )
    return rows


def results_markdown(
    study: str, db_path: Path, report_path: Path | None, counts: dict[str, int]
) -> str:
    """Where the answer lives: report, DuckDB file, and the query that shows the crossovers."""
    runs = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    report = f"[{report_path}]({report_path.as_uri()})" if report_path else "not written"
    return "\n".join(
        [
            f"### Study `{study}`",
            f"- runs: {runs}",
            f"- report: {report}",
            f"- results (DuckDB): `{db_path}`",
            "",
            "```sql",
            "-- duckdb -readonly " + str(db_path),
            "SELECT model_name, unique_tokens, metric, status,",
            "       epoch, epoch_lo, epoch_hi, p_crossover, n_boot",
            "FROM crossovers ORDER BY metric, model_name, unique_tokens;",
            "```",
        ]
    )


class LoggedProgress:
    """The sweep's progress line in the flow run's log: the first, then every ``every_s``
    seconds, and the last (the terminal rewrites its line; a log keeps every one)."""

    def __init__(
        self, logger: logging.Logger | logging.LoggerAdapter, every_s: float = 30.0
    ) -> None:
        self.logger, self.every_s = logger, every_s
        self.start = time.monotonic()
        self.last: float | None = None

    def __call__(self, progress: GridProgress) -> None:
        now = time.monotonic()
        finished = progress.done + progress.failed + progress.skipped == progress.total
        if finished or self.last is None or now - self.last >= self.every_s:
            self.logger.info(format_progress(progress, now - self.start))
            self.last = now


def with_flow_log(terminal: Callable[[GridProgress], None]) -> Callable[[GridProgress], None]:
    """``terminal`` plus the progress line in the current Prefect run's log."""
    logged = LoggedProgress(get_run_logger())

    def both(progress: GridProgress) -> None:
        terminal(progress)
        logged(progress)

    return both


# ---- tasks ------------------------------------------------------------------------------------


@task(name="run", task_run_name="{label}")
def run_outcome_task(label: str, row: dict[str, Any]) -> State:
    """One grid point's outcome as a task run named by its label (state = the run's outcome)."""
    if row["status"] == "failed":
        return Failed(message=f"{label}: {row['failure reason'] or 'failed'}")
    return Completed(message=f"{label}: {row['status']}", data=row)


@task(name="publish-runs")
def publish_runs_task(
    study: str, outcomes: list[RunOutcome], runs_root: Path, per_run_tasks: bool = True
) -> None:
    """The runs table artifact and (``per_run_tasks``) one named task run per grid point."""
    rows = run_rows(outcomes, {o.run_id: read_status(runs_root / o.run_id) for o in outcomes})
    create_table_artifact(
        rows, key=artifact_key("runs", study), description=f"Runs of study {study}"
    )
    for row in rows if per_run_tasks else []:
        run_outcome_task(row["run"], row, return_state=True)


def publish_results(study: str, db_path: Path, report_path: str | None) -> str:
    """Crossover table, report link and results markdown on the current Prefect run; returns
    the crossover summary text (the terminal's, from the same DuckDB table) or why there is
    none."""
    from analysis.errors import AnalysisError
    from analysis.store import ResultsStore
    from analysis.summary import crossover_table, format_summary

    store = ResultsStore(db_path)
    try:
        table = crossover_table(store)
    except AnalysisError as err:  # too few finished runs to compare: say so, don't fail
        text = f"no crossover table: {err}"
        create_markdown_artifact(text, key=artifact_key("crossovers", study))
    else:
        text = format_summary(table)
        create_table_artifact(
            crossover_rows(table),
            key=artifact_key("crossovers", study),
            description=f"Where DLM overtakes AR in study {study} (DuckDB table `crossovers`)",
        )
    report = Path(report_path) if report_path else None
    if report is not None:
        create_link_artifact(
            report.as_uri(),
            link_text=str(report),
            key=artifact_key("report", study),
            description=f"Plotly report of study {study} (open the file on the server's machine)",
        )
    counts = store.query("SELECT status, count(*) AS n FROM runs GROUP BY status")
    by_status = {str(s): int(n) for s, n in zip(counts["status"], counts["n"], strict=True)}
    create_markdown_artifact(
        results_markdown(study, db_path, report, by_status),
        key=artifact_key("results", study),
        description=f"Report and results database of study {study}",
    )
    return text


@task(name="publish-results")
def publish_results_task(study: str, db_path: Path, report_path: str | None) -> str:
    """``publish_results`` as a task of its own (the study flow's page)."""
    return publish_results(study, db_path, report_path)
