"""Session-wide test environment: offline, quiet, and one CPU thread per torch op by default."""

from __future__ import annotations

import os
import sys

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
