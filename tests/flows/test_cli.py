"""The `flows` CLI end to end with an embedded Prefect (temporary server) and an embedded Ray:
the smoke study goes budgets -> runs -> DuckDB -> report; failures are counted in the exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from flows.spec import load_preset
from pipeline.manifest import load_manifest

CLI = [sys.executable, "-m", "flows.cli"]


def _flows(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_dry_run_prints_grid_without_running(tmp_path: Path, cli_env: dict) -> None:
    proc = _flows(
        ["run", "sweep", "--preset", "paper-full", "--dry-run", "--home", str(tmp_path)], cli_env
    )
    assert proc.returncode == 0, proc.stderr
    assert "10 runs" in proc.stdout and "H100 GPU-hours" in proc.stdout
    assert not (tmp_path / "paper-full").exists()


# Runs the CLI in a process where importing Ray or Prefect fails, then reports what was imported.
_NO_RAY = """
import importlib.abc, json, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "prefect"):
            raise ImportError(f"dry run imported {name}")
sys.meta_path.insert(0, Blocker())
from flows.cli import main
code = main(sys.argv[1:])
print(json.dumps([m for m in ("ray", "prefect") if m in sys.modules]))
sys.exit(code)
"""


def test_dry_run_never_imports_ray_or_prefect(
    tmp_path: Path, cli_env: dict, smoke_budgets: tuple[Path, list]
) -> None:
    # Built budgets too (the dry run then reads their manifests for the final run ids).
    home = tmp_path / "home"
    home.mkdir()
    (home / "budgets").symlink_to(smoke_budgets[0], target_is_directory=True)
    args = ["run", "sweep", "--preset", "smoke", "--dry-run", "--home", str(home)]
    proc = subprocess.run(
        [sys.executable, "-c", _NO_RAY, *args],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "4 runs" in proc.stdout and "provisional" not in proc.stdout


def test_bad_spec_exits_2_naming_the_field(tmp_path: Path, cli_env: dict) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("name: x\nbudgets: {sizes: [100]}\nmodels: [tiny, xxl]\nepochs: [1]\n")
    proc = _flows(["run", "sweep", "--config", str(study), "--dry-run"], cli_env)
    assert proc.returncode == 2
    assert "models[1]: unknown preset 'xxl'" in proc.stderr


def test_smoke_study_failures_then_resume(home_with_budgets: Path, cli_env: dict) -> None:
    home = home_with_budgets
    spec = load_preset("smoke")
    budget_dir = home / "budgets" / spec.budgets.spec_hash / f"budget_{spec.budgets.sizes[0]}"
    manifest = load_manifest(budget_dir / "manifest.json")
    # Break the smallest budget's tokens: its runs raise inside train_run; the others complete.
    hidden = []
    for name in manifest.train_files:
        Path(name).rename(name + ".hidden")
        hidden.append(Path(name))
    args = ["run", "sweep", "--preset", "smoke", "--home", str(home), "--num-cpus", "2"]

    first = _flows(args, cli_env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 trained, 0 already done, 2 failed" in first.stdout
    assert first.stdout.count("FAILED ") == 2
    db_path = home / "smoke" / "results.duckdb"
    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute("SELECT status, failure_reason FROM runs").fetchall()
    assert sorted(r[0] for r in rows) == ["completed"] * 2 + ["failed"] * 2
    assert all("train.ds" in (reason or "") for status, reason in rows if status == "failed")

    for path in hidden:
        Path(str(path) + ".hidden").rename(path)
    second = _flows(args, cli_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 trained, 2 already done, 0 failed" in second.stdout
    with duckdb.connect(str(db_path), read_only=True) as con:
        statuses = con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    assert statuses == [("completed", 4)]
    assert (home / "smoke" / "report" / "report.html").stat().st_size > 10_000
    assert f"results (DuckDB): {db_path}" in second.stdout
    # Quiet: no library log walls on the terminal.
    assert "INFO" not in second.stderr and "Traceback" not in second.stderr

    status = _flows(["status", "--preset", "smoke", "--home", str(home)], cli_env)
    assert status.returncode == 0 and "4 completed" in status.stdout


def test_deploy_refuses_without_a_server(cli_env: dict) -> None:
    # Deploying into Prefect's temporary server would silently lose the deployments.
    proc = _flows(["deploy"], cli_env)
    assert proc.returncode == 2
    assert "PREFECT_API_URL" in proc.stderr


def test_second_writer_of_a_study_says_so_and_exits_2(tmp_path: Path, cli_env: dict) -> None:
    from filelock import FileLock

    lock = FileLock(str(tmp_path / "smoke" / ".writer.lock"), is_singleton=False)
    (tmp_path / "smoke").mkdir()
    with lock:  # what a running sweep holds
        proc = _flows(["run", "sweep", "--preset", "smoke", "--home", str(tmp_path)], cli_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "another process is writing this study" in lines[0]
    assert "--wait" in lines[0] and not (tmp_path / "smoke" / "results.duckdb").exists()


def test_full_disk_is_one_line_naming_path_and_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno

    from flows import cli

    target = tmp_path / "study" / "results.duckdb"

    def full(_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(cli, "_quiet", lambda: None)
    monkeypatch.setattr(cli, "_dispatch", full)
    assert cli.main(["run", "report", "--preset", "smoke"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(target) in line and "MiB free" in line and "rerun" in line


def test_report_waits_for_the_writer_then_says_so(tmp_path: Path) -> None:
    from filelock import FileLock, Timeout

    from flows.cli import StudyBusy, study_writer

    path = tmp_path / "study" / ".writer.lock"
    path.parent.mkdir()
    holder = FileLock(str(path), is_singleton=False)
    with holder, pytest.raises(StudyBusy, match="after 1 s"):
        with study_writer(path, 1.0):
            pass
    with study_writer(path, 1.0), pytest.raises(Timeout):  # released: ours now, theirs not
        FileLock(str(path), is_singleton=False).acquire(timeout=0)
