"""Exact binomial intervals for coverage counts (how often an interval held the planted truth)."""

from __future__ import annotations

from scipy.stats import beta


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) ``level`` interval of a success rate from ``k`` of ``n``."""
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    tail = (1.0 - level) / 2.0
    lo = beta.ppf(tail, k, n - k + 1) if k > 0 else 0.0
    hi = beta.ppf(1.0 - tail, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)
