"""The law-fit objective as one vectorised function of named parameters.

    objective(theta) = sum_i huber_delta(log L_pred(N_i, D_i, U_i; theta) - log L_i),  delta = 1e-3

with log L_pred = logsumexp(a - alpha log N', b - beta log D', e), as two ``np.logaddexp``
(Hoffmann et al., Muennighoff et al.). theta holds the seven named parameters (a = log A,
b = log B, e = log E, alpha, beta, log R_D*, log R_N*); any subset may be frozen, and the
optimiser sees only the free ones.
``values`` evaluates many parameter vectors at once (a grid, a profile) in one array pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import huber

HUBER_DELTA = 1e-3
NAMES = ("a", "b", "e", "alpha", "beta", "log_rd", "log_rn")
BOUNDS = {
    "a": (-10.0, 60.0),
    "b": (-10.0, 60.0),
    "e": (-5.0, 5.0),
    "alpha": (1e-4, 3.0),
    "beta": (1e-4, 3.0),
    "log_rd": (math.log(0.05), math.log(1e5)),
    "log_rn": (math.log(0.05), math.log(1e5)),
}


def _decayed(repeats: NDArray[np.float64], log_r: NDArray[np.float64]) -> NDArray[np.float64]:
    # R* (1 - exp(-R / R*)) with expm1 (exact for large R*); log R* = +inf -> R (no decay).
    r_star = np.exp(log_r)
    with np.errstate(invalid="ignore", over="ignore"):
        out = -r_star * np.expm1(-repeats / r_star)
    return np.where(np.isinf(r_star), repeats, out)


@dataclass(frozen=True)
class LawData:
    """Log-space data of one fit: N, D, U per point and the observed log loss, shape (n,)."""

    log_n: NDArray[np.float64]
    log_d: NDArray[np.float64]
    log_u: NDArray[np.float64]
    log_y: NDArray[np.float64]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> LawData:
        cols = ("n_params", "tokens", "unique_tokens", "loss")
        n, d, u, y = (np.log(frame[c].to_numpy(float)) for c in cols)
        return cls(n, d, u, y)

    def take(self, idx: NDArray[np.int64]) -> LawData:
        return LawData(self.log_n[idx], self.log_d[idx], self.log_u[idx], self.log_y[idx])

    def __len__(self) -> int:
        return len(self.log_y)

    @cached_property
    def _fixed(self) -> tuple[NDArray[np.float64], ...]:
        # Parameter-free pieces: U, min(D, U) and R_D = max(D/U - 1, 0).
        d, u = np.exp(self.log_d), np.exp(self.log_u)
        return u, np.minimum(d, u), np.maximum(d / u - 1.0, 0.0)

    def predict_log(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """log L_pred for parameter rows ``theta`` (k, 7) -> (k, n)."""
        t = np.atleast_2d(theta)
        a, b, e, alpha, beta, log_rd, log_rn = (t[:, i : i + 1] for i in range(7))
        u, first_epoch, repeats_d = self._fixed
        log_d_eff = np.log(first_epoch + u * _decayed(repeats_d, log_rd))
        # N_opt(U) = G (G U)^(beta/alpha), G = (alpha A / (beta B))^(1/(alpha+beta)) (laws.py).
        log_g = (np.log(alpha) + a - np.log(beta) - b) / (alpha + beta)
        log_un = np.minimum(self.log_n, log_g + (beta / alpha) * (log_g + self.log_u))
        # N' = U_N (1 + R_N* (1 - exp(-R_N / R_N*))), R_N = N / U_N - 1 >= 0.
        repeats_n = np.expm1(np.minimum(self.log_n - log_un, 700.0))
        log_n_eff = log_un + np.log1p(_decayed(repeats_n, log_rn))
        t_e = np.broadcast_to(e, log_n_eff.shape)
        return np.logaddexp(np.logaddexp(a - alpha * log_n_eff, b - beta * log_d_eff), t_e)

    def values(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Objective at every row of ``theta`` (k, 7) -> (k,), chunked to bound memory."""
        t = np.atleast_2d(theta)
        out = np.empty(len(t))
        chunk = max(1, 1_000_000 // max(len(self), 1))
        for lo in range(0, len(t), chunk):
            r = self.predict_log(t[lo : lo + chunk]) - self.log_y
            out[lo : lo + chunk] = huber(HUBER_DELTA, r).sum(axis=1)
        return out

    def value(self, theta: NDArray[np.float64]) -> float:
        return float(self.values(theta)[0])

    def residuals(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.predict_log(theta)[0] - self.log_y


def lr_scale(residuals: NDArray[np.float64], n_free: int) -> float:
    """Scale xi that turns objective differences into a likelihood-ratio statistic.

    For an M-estimator with psi = rho', 2 (obj(theta_0) - obj(theta_hat)) / xi is asymptotically
    chi^2 with xi = E[psi^2] / E[psi'] (Ronchetti's robust LR test). Huber: psi = clip(r, +-delta),
    psi' = 1{|r| < delta}. E[psi'] = P(|r| < delta) is estimated with a Gaussian kernel (a
    handful of residuals fall inside delta, so a raw count is too noisy); n/(n - p) undoes the
    shrinkage of residuals by the fitted parameters. Gaussian limit: xi = sigma^2; Laplace
    limit: xi = delta * b.
    """
    from scipy.stats import norm

    r = np.asarray(residuals, float)
    n = len(r)
    psi2 = np.mean(np.clip(r, -HUBER_DELTA, HUBER_DELTA) ** 2)
    sd = 1.4826 * np.median(np.abs(r - np.median(r)))
    h = max(1.06 * max(sd, 1e-12) * n ** (-0.2), 1e-12)
    inside = np.mean(norm.cdf((HUBER_DELTA - r) / h) - norm.cdf((-HUBER_DELTA - r) / h))
    return float(psi2 / max(inside, 1e-12) * n / max(n - n_free, 1))
