"""PNG export of a report figure: kaleido when installed, else a headless Chromium screenshot."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import plotly.graph_objects as go


def find_chromium() -> str | None:
    """A Chromium/Chrome binary kaleido can drive, or None (PNG export is then skipped)."""
    if os.environ.get("BROWSER_PATH") and Path(os.environ["BROWSER_PATH"]).exists():
        return os.environ["BROWSER_PATH"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def png_unavailable_reason() -> str | None:
    """Why no PNG can be made here (no Chromium for kaleido or a headless screenshot), or None."""
    if find_chromium() is None:
        return "no Chromium on this machine (install chromium or set BROWSER_PATH)"
    return None


def _screenshot_png(fig: go.Figure, path: Path, chromium: str) -> None:
    """Render ``fig`` with headless Chromium alone (no kaleido): a standalone page, screenshot."""
    width, height = int(fig.layout.width or 1300), int(fig.layout.height or 560)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "figure.html"
        fig.write_html(str(page), include_plotlyjs=True, config={"displayModeBar": False})
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp}", f"--screenshot={path}",
               f"--window-size={width + 20},{height + 20}", "--virtual-time-budget=15000",
               page.as_uri()]  # fmt: skip
        subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no image to {path}")


def export_png(fig: go.Figure, path: Path) -> str:
    """Write ``fig`` as PNG (kaleido when installed, else a headless Chromium screenshot).

    Returns what happened; a failure never loses the HTML report.
    """
    if (reason := png_unavailable_reason()) is not None:
        return f"PNG export skipped: {reason}"
    try:
        if importlib.util.find_spec("kaleido") is not None:
            fig.write_image(str(path))
        else:
            _screenshot_png(fig, path, find_chromium() or "chromium")
    except Exception as err:  # kaleido/Chromium failures must not lose the HTML report
        return f"PNG export failed: {err}"
    return f"PNG written: {path}"
