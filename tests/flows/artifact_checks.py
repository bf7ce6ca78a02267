"""What a study's flow run must show in the Prefect UI, checked over the REST API (shared by the
test-server and the deployment/worker tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import duckdb


class PostJSON(Protocol):
    def post(self, path: str, body: dict) -> Any: ...


def _data(artifact: dict) -> Any:
    data = artifact["data"]
    return json.loads(data) if artifact["type"] == "table" and isinstance(data, str) else data


def check_study_artifacts(
    api: PostJSON, flow_run_id: str, study: str, report: Path, db: Path
) -> dict[str, dict]:
    """The flow run holds the crossover table (the rows of DuckDB's ``crossovers``), the runs
    table, a link to the report and markdown naming the DuckDB file; returns them by key."""
    found = api.post("/artifacts/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    by_key = {a["key"]: a for a in found if a.get("key")}
    want = {f"{k}-{study}" for k in ("crossovers", "runs", "report", "results")}
    assert want <= set(by_key), f"artifacts of the run: {sorted(by_key)}"

    crossover = by_key[f"crossovers-{study}"]
    assert crossover["type"] == "table", crossover
    rows = _data(crossover)
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute(
            "SELECT model_name, unique_tokens, metric, status, epoch, p_crossover, n_boot "
            "FROM crossovers"
        ).fetchall()
    assert len(rows) == len(stored)
    for row, (model, u, metric, status, epoch, p, n_boot) in zip(rows, stored, strict=True):
        assert (row["model"], row["unique tokens"], row["metric"], row["status"]) == (
            model, u, metric, status,
        )  # fmt: skip
        assert row["bootstrap draws"] == n_boot
        assert "95% interval (epochs)" in row and "P(crossover)" in row
        if status == "crossover":
            assert row["DLM overtakes AR at epoch"] == f"{epoch:.3g}"
        if p is not None and status != "insufficient_data":
            assert row["P(crossover)"] == f"{p:.2f}"

    runs = _data(by_key[f"runs-{study}"])
    assert runs and {"run", "status", "failure reason", "tokens/s"} <= set(runs[0])
    link = by_key[f"report-{study}"]
    # Prefect 3.8 stores a link artifact as markdown "[text](url)".
    assert f"({report.resolve().as_uri()})" in link["data"], link
    results = by_key[f"results-{study}"]
    assert results["type"] == "markdown" and str(db) in results["data"]
    return by_key


class RestAPI:
    """``post`` over plain HTTP to a Prefect server's API (an ``httpx.Client`` on its base URL)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, path: str, body: dict) -> Any:
        response = self.client.post(path, json=body)
        response.raise_for_status()
        return response.json()


def check_progress_logged(api: PostJSON, n_runs: int) -> None:
    """Some flow run logged the sweep's final progress line (``runs N/N · ...``)."""
    logs = api.post("/logs/filter", {"limit": 200})
    messages = [log["message"] for log in logs]
    assert any(m.startswith(f"runs {n_runs}/{n_runs} · ") for m in messages), messages
