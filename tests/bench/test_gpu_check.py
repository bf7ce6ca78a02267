"""bench/gpu_check.py in its tiny CPU mode, as the device would run it (cluster stack blocked),
and the mini-study's round trip: prepare -> train + pack -> ingest -> DuckDB + report.

Kept out of the default run (`make test-slow` runs it; run it before a device session): every
section of the check runs under a wall-clock budget (60 s each in tiny mode), so on a loaded
2-core machine the mini-study is cut short and the test fails for want of time, not of
correctness; idle it takes about a minute, two torch.compile cells included."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest
from device_sim import REPO, run_as_device

sys.path.insert(0, str(REPO / "bench"))
from gpu_payload import ingest, load_runs, prepare  # noqa: E402

SECTIONS = ("attention", "fused_ce", "throughput", "mini_study")


@pytest.mark.slow
def test_tiny_check_trains_the_prepared_study_and_ingests_it(tmp_path: Path) -> None:
    # Prepared where the CPU side keeps it; trained from a copy under another absolute path,
    # as on the device (its tree lives elsewhere), so the run ids must survive relocation.
    cpu_payload, device_payload = tmp_path / "cpu" / "payload", tmp_path / "device" / "payload"
    prepared = prepare(None, "smoke", cpu_payload)
    assert len(prepared["runs"]) == 4
    import shutil

    shutil.copytree(cpu_payload, device_payload)
    out = tmp_path / "out"
    code = f"""
import runpy, sys
sys.argv = ["gpu_check.py", "--out", {str(out)!r}, "--device", "cpu", "--tiny",
            "--payload", {str(device_payload)!r}]
runpy.run_path("bench/gpu_check.py", run_name="__main__")
"""
    proc = run_as_device(code, timeout=600, env={"GPU_CHECK_WORK": str(tmp_path / "work")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    results = json.loads((out / "gpu_check.json").read_text())
    assert results["mode"] == "tiny"
    for name in SECTIONS:
        assert "error" not in results["sections"][name], results["sections"][name]
    attn = results["sections"]["attention"]
    assert attn["math_causal"]["max_abs_err_out"] == 0.0  # fp32 math vs itself
    ce = results["sections"]["fused_ce"]
    assert ce["chunked"]["loss_abs_err"] < 1e-5 and ce["plain"]["loss_abs_err"] < 1e-5
    assert "skipped" in ce["liger"]
    thr = results["sections"]["throughput"]
    for cell in ("tiny_ar_eager", "tiny_dlm_eager", "tiny_ar_compile", "tiny_dlm_compile"):
        assert thr[cell]["tokens_per_s"] > 0 and thr[cell]["mfu_vs_peak"] is None, cell
    assert thr["tiny_batch"] == 2
    study = results["sections"]["mini_study"]
    ids = [r["run_id"] for r in prepared["runs"]]
    assert all(study[i]["status"] == "completed" for i in ids)

    with tarfile.open(out / "mini_study.tar.gz") as tar:
        names = tar.getnames()
    assert not any("ckpt" in n for n in names)
    assert sum(n.endswith("result.json") for n in names) == 4

    assert sorted(ingest(out / "mini_study.tar.gz", cpu_payload)) == sorted(ids)
    assert sorted(ingest(out / "mini_study.tar.gz", cpu_payload)) == sorted(ids)  # idempotent
    _report(cpu_payload, ids)


def _report(payload: Path, ids: list[str]) -> None:
    """The normal `flows run report` tasks over the ingested runs (without a Prefect server)."""
    import duckdb

    from flows.flows import StudyPaths, build_budgets_task, ingest_task, report_task
    from flows.spec import load_preset

    prepared = load_runs(payload)
    paths = StudyPaths.of(load_preset("smoke"), prepared["home"])
    assert ingest_task.fn(paths, build_budgets_task.fn(load_preset("smoke"), paths.home)) == 4
    assert Path(report_task.fn(paths)).exists()
    with duckdb.connect(str(paths.db_path), read_only=True) as con:
        rows = con.sql("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
        n_evals = con.sql("SELECT count(*) FROM evals").fetchall()[0][0]
    assert rows == [(i, "completed") for i in sorted(ids)]
    assert n_evals > 0
