"""Session-wide test environment: offline, quiet, and one CPU thread per torch op by default;
a migrated Prefect database that tests starting a Prefect server copy into a fresh PREFECT_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.settings import apply_offline_defaults

apply_offline_defaults()
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Test folders mirror the source tree, so basenames repeat (tests/flows/test_cli.py and
# tests/pipeline/test_cli.py): pytest imports them with importlib, and each folder's plain helper
# modules (analysis_fixtures, pipeline_corpora, trainer_fixtures, ...) are importable by name.
_TESTS = os.path.dirname(os.path.abspath(__file__))
for _name in sorted(os.listdir(_TESTS)):
    _path = os.path.join(_TESTS, _name)
    if os.path.isdir(_path) and not _name.startswith(("_", ".")) and _path not in sys.path:
        sys.path.append(_path)


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Prefect database with every migration applied (`prefect server database upgrade`),
    made once per session. A server started on a copy of it skips the migrations, which cost
    ~15 s of CPU per fresh PREFECT_HOME (measured on the 2-core machine)."""
    home = tmp_path_factory.mktemp("prefect-template")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and (home / "prefect.db").exists(), done.stdout + done.stderr
    return home / "prefect.db"


@pytest.fixture
def prefect_home(tmp_path: Path, migrated_prefect_db: Path) -> Path:
    """This test's own new PREFECT_HOME holding a copy of the session's migrated (empty)
    database: no state from another test, no migrations when a server starts on it."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    shutil.copy2(migrated_prefect_db, home / "prefect.db")
    return home
