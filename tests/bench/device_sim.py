"""Simulate the GPU device machine's Python: the cluster stack and our own cluster-side packages
are unimportable, so anything the device runs must live on torch + pydantic + safetensors +
pyarrow + pandas + numpy + pyyaml (what the device has, plus the pydantic wheels it is sent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Not on the device (or, for pipeline/flows/analysis, only usable with what is not there).
BLOCKED = (
    "ray", "prefect", "prefect_ray", "duckdb", "datatrove", "plotly", "kaleido", "scipy",
    "pydantic_settings", "pipeline", "flows", "analysis",
)  # fmt: skip

_PRELUDE = """
import importlib.abc, runpy, sys
BLOCKED = {blocked!r}
class _DeviceBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{{name}} is not installed on the device", name=name)
        return None
sys.meta_path.insert(0, _DeviceBlocker())
"""


def run_as_device(code: str, timeout: float = 600, env: dict[str, str] | None = None):
    """Run Python ``code`` in a fresh interpreter with BLOCKED unimportable; returns the result."""
    prelude = _PRELUDE.format(blocked=BLOCKED)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
