"""`flows run sweep --adaptive` end to end on the smoke corpus: real Prefect, Ray, training and
DuckDB; the grid is the smoke study on its smaller budget, 4 epoch settings x 2 seeds, one seed
per setting chosen at a time (--min-seeds 1) so it trains a handful of runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import yaml

from flows.adaptive import format_adaptive, step_rows
from flows.grid import expand_grid
from flows.spec import load_preset, parse_spec

CLI = [sys.executable, "-m", "flows.cli"]


def _adaptive_spec(tmp_path: Path) -> tuple[Path, float]:
    """A smoke-derived grid (one budget) and a compute cap of 1.5x its seed design."""
    data = load_preset("smoke").model_dump(mode="json")
    data.update(name="smoke-adaptive", epochs=[1, 2, 3, 4], seeds=[0, 1])
    data["budgets"]["sizes"] = data["budgets"]["sizes"][:1]
    data["eval"].update(every_epochs=None, at_start=False)
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump(data))
    runs = expand_grid(parse_spec(data))
    seed_flops = sum(r.flops for r in runs if r.epochs <= 3 and r.seed == 0)
    return path, 1.5 * seed_flops


def test_adaptive_sweep_end_to_end(cli_env: dict, tmp_path: Path) -> None:
    spec_path, cap = _adaptive_spec(tmp_path)
    home = tmp_path / "home"
    args = [*CLI, "run", "sweep", "--config", str(spec_path), "--home", str(home)]
    args += ["--adaptive", "--target-width", "0.01", "--compute-cap", f"{cap:.6g}"]
    args += ["--min-seeds", "1", "--num-cpus", "2"]
    proc = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "adaptive sweep smoke-adaptive:" in proc.stdout
    db = home / "smoke-adaptive" / "results.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        steps = con.execute(
            "SELECT step, kind, n_runs, compute_spent, why FROM adaptive_steps ORDER BY step"
        ).fetchall()
        completed = con.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()
    # Seed design: 2 objectives x 3 lowest epoch settings x 1 seed.
    assert steps[0][:3] == (0, "seed_design", 6)
    assert steps[-1][1] == "stop" and steps[-1][2] == 0
    assert [s[0] for s in steps] == list(range(len(steps)))
    # Every chosen run trained once and the cap held (runs are counted at planned FLOPs).
    assert completed[0] == sum(s[2] for s in steps)
    assert steps[-1][3] <= cap
    report = home / "smoke-adaptive" / "report" / "report.html"
    assert "Adaptive sweep decisions" in report.read_text()
    # A rerun replays the same decisions on the finished runs: nothing trains, no row doubles.
    again = subprocess.run(args, env=cli_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        rerun = con.execute("SELECT step, kind, n_runs FROM adaptive_steps ORDER BY step")
        assert rerun.fetchall() == [s[:3] for s in steps]
        assert con.execute("SELECT count(*) FROM runs").fetchone() == completed


def test_step_rows_and_summary_are_plain_text() -> None:
    from analysis.adaptive_loop import Step

    step = Step(
        0, "stop", "", "", 0, 0.0, float("nan"), "target reached", "a", "a", 0.2, float("inf"), 1e12
    )
    row = step_rows([step])[0]
    assert row["width after (hi/lo - 1)"] == "inf" and row["runs"] is None
    text = format_adaptive(
        {
            "study": "s",
            "stop_reason": "target reached",
            "steps": 1,
            "runs_done": 0,
            "grid_runs": 4,
            "compute_spent": 1.0,
            "grid_compute": 4.0,
            "intervals": {"m U=1": "x"},
            "db_path": "d",
            "report_path": "r",
            "crossover": "",
            "failures": [],
        }
    )
    assert "25% of the full grid" in text
