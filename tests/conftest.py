"""Session-wide test environment: offline, quiet, and one CPU thread per torch op by default."""

from __future__ import annotations

import os

from pipeline.settings import apply_offline_defaults

apply_offline_defaults()
os.environ.setdefault("OMP_NUM_THREADS", "1")
