"""Smooth curves of a metric vs epochs, per (model, budget, objective).

A smoothing spline in log-epoch whose penalty is chosen by generalised cross-validation; used to
interpolate where measured points are sparse and to locate crossovers between two curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.interpolate import make_smoothing_spline

from analysis.errors import AnalysisError


@dataclass(frozen=True)
class SmoothCurve:
    """Smooth fit of y(epoch) in log-epoch: 'spline' (>= 5 distinct epochs) or 'linear'.

    ``values`` may hold several columns (bootstrap replicates, shape (n_epochs, B)); then the
    curve returns (len(epochs), B) and every column shares the smoothing penalty ``lam``.
    """

    epochs: NDArray[np.float64]
    values: NDArray[np.float64]
    kind: str
    lam: float
    _fn: Callable[[NDArray[np.float64]], NDArray[np.float64]] = field(repr=False)

    @property
    def epoch_range(self) -> tuple[float, float]:
        return float(self.epochs.min()), float(self.epochs.max())

    def __call__(self, epochs: NDArray[np.float64] | float) -> NDArray[np.float64]:
        return self._fn(np.log(np.asarray(epochs, dtype=float)))


_LAMBDAS = np.geomspace(1e-6, 1e3, 28)


def gcv_lambda(log_x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """Smoothing penalty by generalised cross-validation over a log grid.

    The spline is linear in y for a fixed penalty: fitting the identity gives the hat matrix H
    (n, n), and GCV = n |y - H y|^2 / (n - tr H)^2.
    """
    n = len(log_x)
    eye = np.eye(n)
    best_lam, best = float(_LAMBDAS[0]), math.inf
    for lam in _LAMBDAS:
        hat = make_smoothing_spline(log_x, eye, lam=lam)(log_x)  # (n, n)
        resid = y - hat @ y
        score = n * float(resid @ resid) / max(n - float(np.trace(hat)), 1e-9) ** 2
        if score < best:
            best_lam, best = float(lam), score
    return best_lam


def fit_smooth_curve(
    epochs: NDArray[np.float64], values: NDArray[np.float64], lam: float | None = None
) -> SmoothCurve:
    """Average repeated epochs, then a smoothing spline in log-epoch (GCV penalty unless
    ``lam`` is given), or linear interpolation with fewer than 5 distinct epochs."""
    x_raw = np.asarray(epochs, float)
    y_raw = np.asarray(values, float).reshape(len(x_raw), -1)  # (n_points, B)
    keep = np.isfinite(x_raw) & (x_raw > 0) & np.isfinite(y_raw).all(axis=1)
    frame = pd.DataFrame(y_raw[keep]).assign(x=x_raw[keep])
    agg = frame.groupby("x").mean().sort_index()
    x, y = agg.index.to_numpy(float), agg.to_numpy(float)  # y: (n_epochs, B)
    if len(x) < 2:
        raise AnalysisError(
            f"smooth curve needs >= 2 distinct epochs with finite values, got {len(x)}"
        )
    lx = np.log(x)
    squeeze = np.ndim(values) == 1
    y_out = y[:, 0] if squeeze else y
    if len(x) >= 5:
        lam = gcv_lambda(lx, y[:, 0]) if lam is None else lam
        spline = make_smoothing_spline(lx, y_out, lam=lam)
        return SmoothCurve(x, y_out, "spline", lam, spline)
    if squeeze:
        return SmoothCurve(x, y_out, "linear", 0.0, lambda t: np.interp(t, lx, y_out))
    cols = y.T
    return SmoothCurve(
        x, y_out, "linear", 0.0, lambda t: np.stack([np.interp(t, lx, c) for c in cols], axis=-1)
    )
