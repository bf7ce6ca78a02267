"""The `flows` CLI in child processes: dry runs, spec errors, the study lock, a full disk.

The smoke study through the CLI (budgets -> runs -> DuckDB -> report, failures counted in the exit
code, a rerun resuming only what failed) is tests/test_study_e2e.py: one study serves both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
