"""Fixtures of the analysis tests; the builders live in ``analysis_fixtures`` (importable)."""

from __future__ import annotations

import os
from pathlib import Path

# L-BFGS-B calls BLAS; OpenBLAS threads fighting over 2 loaded cores make fits ~7x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
from analysis_fixtures import build_small_study  # noqa: E402


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    return build_small_study(tmp_path / "study")
