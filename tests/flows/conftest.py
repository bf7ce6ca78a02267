"""Fixtures for the flows tests: built smoke budgets (once per session), free ports, a small
real tmpfs that fills up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flows_fixtures import free_ports

from flows.spec import StudySpec, load_preset
from pipeline.manifest import BudgetManifest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smoke_spec() -> StudySpec:
    return load_preset("smoke")


@pytest.fixture(scope="session")
def smoke_budgets(
    smoke_spec: StudySpec, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[BudgetManifest]]:
    """(budgets root, manifests) of the smoke preset, built once for every test that trains."""
    from pipeline import build_budgets

    root = tmp_path_factory.mktemp("budgets")
    return root, build_budgets(smoke_spec.budgets, root)


@pytest.fixture
def home_with_budgets(tmp_path: Path, smoke_spec: StudySpec) -> Path:
    """A fresh studies home with the smoke budgets built in it (manifests hold absolute paths,
    so each home builds its own: tests may break files in it)."""
    from pipeline import build_budgets

    home = tmp_path / "home"
    build_budgets(smoke_spec.budgets, home / "budgets")
    return home


@pytest.fixture
def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    return free_ports(1)[0]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir: Ray's unix socket paths must stay under ~100 characters."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI/server subprocesses: fresh PREFECT_HOME, project importable."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB tmpfs (a disk that fills up), unmounted at teardown whatever happened.
    Mounting needs root and a kernel that lets this container mount: skipped with the reason
    where it is refused (many CI machines), where the simulated ENOSPC tests still run."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    cmd = ["mount", "-t", "tmpfs", "-o", "size=16M", "tmpfs", str(mount)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)
