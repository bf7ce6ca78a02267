"""training_core imports and trains on the GPU device's Python: no Ray, Prefect, DuckDB,
datatrove, plotly, scipy or pydantic-settings (tests/bench/device_sim.py blocks them)."""

from __future__ import annotations

from device_sim import run_as_device


def test_training_core_trains_with_the_cluster_stack_blocked(tmp_path) -> None:
    code = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
import training_core, training_core.trainer, training_core.run_io, training_core.evaluation
import training_core.fused_ce, training_core.checkpoint
from trainer_fixtures import tiny_config, tiny_data
from training_core import train_run
tmp = Path({str(tmp_path)!r})
for kind in ("ar", "dlm"):
    cfg = tiny_config(tiny_data(tmp), kind, epochs=1.0, loss_impl="chunked")
    assert train_run(cfg, tmp / kind).status == "completed"
try:
    import duckdb
except ModuleNotFoundError:
    print("BLOCKED-OK")
"""
    proc = run_as_device(code, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BLOCKED-OK" in proc.stdout
