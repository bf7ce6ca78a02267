"""`flows run sweep --adaptive` end to end on the smoke corpus: real Prefect, Ray, training and
DuckDB; the grid is the smoke study on its smaller budget, 4 epoch settings x 2 seeds, one seed
per setting chosen at a time (--min-seeds 1) so it trains a handful of runs."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from flows.adaptive import candidate_of, decision_lines, format_adaptive, step_rows
from flows.deployments import DEMO_STOP_RULE
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


def test_adaptive_sweep_end_to_end(cli_env: dict, prefect_home: Path, tmp_path: Path) -> None:
    cli_env = {**cli_env, "PREFECT_HOME": str(prefect_home)}  # its database already migrated
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
    # The terminal lists every decision of the table, in order.
    out = proc.stdout.split("decisions (step, kind, runs")[1].split("all columns:")[0]
    printed = [ln.split()[:3] for ln in out.splitlines()[1:]]
    assert printed == [[str(s[0]), s[1], str(s[2])] for s in steps]
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
    (line,) = decision_lines([step])
    assert line.split()[:3] == ["0", "stop", "0"] and line.endswith("target reached")
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
            "decisions": ["  0 stop          0 runs"],
            "db_path": "d",
            "report_path": "r",
            "crossover": "",
            "failures": [],
        }
    )
    assert "25% of the menu" in text


def _planted_demo_loss(objective: str, epochs: float) -> float:
    """Final validation losses shaped like the CPU demo's measured ones at 25K unique tokens
    (nats; README, "Adaptive sweep"): AR best near 6 epochs and overfitting after, the DLM
    nearly flat and slowly improving; they cross at 20 epochs."""
    ar = 5.56 + 0.6 * math.log(epochs / 6) ** 2
    ar_at_20 = 5.56 + 0.6 * math.log(20 / 6) ** 2
    return ar if objective == "ar" else ar_at_20 + 0.05 * math.log(20 / epochs)


def test_demo_menu_and_stop_rule_locate_a_planted_crossover() -> None:
    """The adaptive-demo preset's own menu with the demo's stop rule, on planted final losses
    (crossover at 20 epochs, 0.05 nats seed-to-seed as the demo's DLM): the sweep closes an
    interval at the truth, narrower than the target, without passing the cap."""
    from analysis.adaptive import AcquisitionConfig
    from analysis.adaptive_loop import AdaptiveConfig, run_adaptive

    # Planned FLOPs from the requested 25K; the built budget holds up to ~7% more (26,620).
    runs = expand_grid(load_preset("adaptive-demo"))
    candidates = [replace(candidate_of(r), flops=1.07 * r.flops) for r in runs]
    rng = np.random.default_rng(0)
    observed: list[dict] = []

    def run(batch: list) -> None:
        for c in batch:
            y = _planted_demo_loss(c.objective, c.epochs) + 0.05 * rng.standard_normal()
            row = {"run_id": c.key, "seed": c.seed, "objective": c.objective, "y": y, "se": 0.01}
            row |= {"model_name": c.model_name, "unique_tokens": c.unique_tokens}
            observed.append(row | {"epoch": c.epochs, "flops": c.flops})

    rule = DEMO_STOP_RULE
    cfg = AdaptiveConfig(
        target_width=rule["target_width"],
        compute_cap=rule["compute_cap"],
        acquisition=AcquisitionConfig(min_seeds=rule["min_seeds"]),
    )
    result = run_adaptive(candidates, run, lambda: pd.DataFrame(observed), cfg)
    assert result.stop_reason.startswith("target reached"), result.table()[["kind", "why"]]
    (iv,) = result.intervals.values()
    # Located between the menu's settings around the truth (its coverage rate is
    # tests/analysis/test_adaptive.py's to check over many draws, not one draw's here).
    assert 16 <= iv.lo <= iv.hi <= 24 and abs(iv.epoch - 20) < 1.5
    assert iv.rel_width <= rule["target_width"]
    assert result.compute_spent <= rule["compute_cap"]


def test_rd_star_width_flag_reaches_the_flow_and_bad_values_name_it(capsys) -> None:
    from flows.cli import build_parser

    base = ["run", "sweep", "--preset", "adaptive-demo", "--adaptive"]
    assert build_parser().parse_args(base).rd_star_width is None  # off: R_D* only logged
    assert build_parser().parse_args([*base, "--rd-star-width", "0.3"]).rd_star_width == 0.3
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--rd-star-width", "0"])
    assert "--rd-star-width" in capsys.readouterr().err


def test_one_ray_starts_nothing_until_a_batch_needs_training() -> None:
    import ray

    from flows.adaptive import one_ray

    assert not ray.is_initialized()
    with one_ray(None, 1) as ensure_ray:
        assert callable(ensure_ray)
        # A rerun whose chosen runs are all finished never calls it: no Ray, no temp dir.
        assert not ray.is_initialized()
    assert not ray.is_initialized()
