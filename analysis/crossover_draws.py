"""The noise behind the crossover interval: what run-to-run spread the data pin, and draws of it.

The interval (``analysis.crossover``) is the spread of the crossings of parametric draws of each
objective's per-epoch means. What those draws may rest on depends on the design:

- final losses, >= 2 seeds at every epoch setting: the relative seed spread pooled over the
  settings, df = sum of (seeds - 1) ("seed spread pooled over epochs");
- final losses, one seed at some setting: every setting is still its own run, so the scatter of
  the means about a smooth curve holds the run-to-run spread. The curve is a cubic in log-epoch
  (weighted by seeds per setting), so the scatter has n - 4 df (plus the replicate df of settings
  with >= 2 seeds). Model misfit left in the scatter only widens the interval; seed effects shared
  by a seed's runs at every setting (one initialisation) are not in it (docs/design.md);
- points along runs (curve mode), >= 2 seeds at every epoch: seeds resampled whole;
- one run per objective along the curve: its points share one seed effect, so nothing in the
  data measures the run-to-run spread: the interval is not identified.

Fewer than ``MIN_DF`` df is "not identified" too: the 95% upper bound of a spread estimated from
df degrees of freedom, s sqrt(df / chi2_0.025(df)), is 31.9 s at 1 df, 6.3 s at 2, 3.7 s at 3.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from scipy.stats import t as student_t

OBJECTIVES = ("ar", "dlm")
# Cubic: on the planted laws' final-loss curves over 4..512 epochs the misfit of a cubic in
# log-epoch is 0.02-0.2% (RMS per df), of a quadratic 0.2-1.1%, against 0.5% seed noise.
CURVE_DEGREE = 3
MIN_DF = 3


@dataclass(frozen=True)
class Spread:
    """One objective's noise model for the draws: ``kind`` is 'pooled' (relative spread
    ``rel_var`` on ``df`` df), 'resampled' (whole seeds) or 'not_identified' (``basis`` then
    says why)."""

    kind: str
    basis: str
    rel_var: float = math.nan
    df: int = 0

    @property
    def identified(self) -> bool:
        return self.kind != "not_identified"


def seed_matrix(points: pd.DataFrame, obj: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, index) for one objective: row = seed, column = each distinct epoch; -1 where a
    seed lacks that epoch. Rows are resampled whole, so points of one run (curve mode) or of
    one seed (final mode) keep their correlation."""
    sub = points[points["objective"] == obj]
    epochs = np.unique(sub["epoch"].to_numpy(float))
    seeds = np.unique(sub["seed"].to_numpy())
    index = -np.ones((len(seeds), len(epochs)), dtype=int)
    for i, (s, e) in enumerate(zip(sub["seed"], sub["epoch"], strict=True)):
        index[np.searchsorted(seeds, s), np.searchsorted(epochs, e)] = sub.index[i]
    return epochs, index


def curve_scatter(epochs: np.ndarray, mean: np.ndarray, n: np.ndarray) -> tuple[float, int]:
    """(sum of squares, df) of the relative scatter of the per-epoch means about a cubic in
    log-epoch, weighted by seeds per epoch (a mean of n runs has variance sigma^2 / n).
    Epoch 0 (the untrained model) is left out; df 0 when <= 4 epochs remain."""
    keep = (epochs > 0) & np.isfinite(mean)
    x, y, w = np.log(epochs[keep]), mean[keep], n[keep].astype(float)
    df = len(x) - (CURVE_DEGREE + 1)
    if df < 1:
        return 0.0, 0
    fit = np.polyval(np.polyfit(x, y, CURVE_DEGREE, w=np.sqrt(w)), x)
    return float((w * ((y - fit) / y) ** 2).sum()), df


def final_spread(vals: np.ndarray, mean: np.ndarray, epochs: np.ndarray) -> Spread:
    """Final mode (every point its own run): the relative spread, pooled over the objective's
    settings, from replicates alone when every setting has >= 2 seeds, else from replicates and
    the scatter about the cubic together."""
    n = np.isfinite(vals).sum(axis=0)  # (E,) seeds per epoch
    ss, df = float(np.nansum((vals / mean - 1.0) ** 2)), int((n - 1).sum())
    if n.min() >= 2:
        return Spread("pooled", "seed spread pooled over epochs", ss / df, df)
    ss_fit, df_fit = curve_scatter(epochs, mean, n)
    ss, df = ss + ss_fit, df + df_fit
    where = "replicates and the scatter" if n.max() >= 2 else "the scatter of the runs"
    if df < MIN_DF:
        return Spread(
            "not_identified",
            f"one seed at {int((n == 1).sum())} of {len(n)} settings: {df} df for the run-to-run "
            f"spread from {where} about a cubic in log-epoch (need >= {MIN_DF}: more settings "
            "or seeds)",
        )
    basis = f"run-to-run spread from {where} about a cubic in log-epoch, {df} df"
    return Spread("pooled", basis, ss / df, df)


def curve_spread(index: np.ndarray) -> Spread:
    """Curve mode (points along runs): seeds resampled whole, or not identified with one seed
    at some epoch (points of one run share its seed effect)."""
    if (index >= 0).sum(axis=0).min() >= 2:
        return Spread("resampled", "seeds resampled")
    return Spread(
        "not_identified",
        "one seed along the curve: its points share one run's seed effect (need >= 2 seeds at "
        "every epoch)",
    )


def resampled_seeds(
    vals: np.ndarray, mean: np.ndarray, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Curve mode (points of one run share a seed): seeds resampled whole, deviations
    inflated by sqrt(k / (k - 1)) (k-cluster bootstrap) times t_df / z on the pooled df."""
    k, n_epochs = vals.shape
    pick = rng.integers(0, k, (n_boot, k))  # (B, k) seeds per draw
    with warnings.catch_warnings():  # a draw may miss an epoch some seeds lack
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.nanmean(vals[pick], axis=1)  # (B, E)
    df = max((k - 1) * n_epochs, 1)
    boost = math.sqrt(k / (k - 1)) * student_t.ppf(0.975, df) / norm.ppf(0.975)
    boot = mean + boost * (boot - mean)
    return np.where(np.isfinite(boot), boot, mean)


def pooled_draws(
    mean: np.ndarray, n: np.ndarray, spread: Spread, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """Each epoch's mean drawn as mean (1 + sigma z / sqrt(n_e)) with sigma^2 = df s^2 / chi2_df
    per draw, so any linear contrast of the means is t_df-distributed (the t interval). Three
    seeds alone give an epoch's spread 2 df: resampling them (or scaling by a pooled t)
    under-covers. Returns (B, E)."""
    sigma = np.sqrt(spread.df * spread.rel_var / rng.chisquare(spread.df, (n_boot, 1)))  # (B, 1)
    z = rng.standard_normal((n_boot, len(mean)))
    return mean * (1.0 + sigma * z / np.sqrt(n))


@dataclass(frozen=True)
class ObjectiveMeans:
    """One objective's per-epoch means, the seeds behind them and its noise model."""

    epochs: np.ndarray  # (E,)
    vals: np.ndarray  # (k, E): seed x epoch, NaN where missing
    mean: np.ndarray  # (E,)
    spread: Spread


def objective_means(points: pd.DataFrame, obj: str, own_runs: bool) -> ObjectiveMeans:
    """Per-epoch means and noise model of ``obj`` (``own_runs``: every point its own run)."""
    y = points["y"].to_numpy(float)
    epochs, index = seed_matrix(points, obj)
    vals = np.where(index >= 0, y[np.maximum(index, 0)], np.nan)  # (k, E)
    with warnings.catch_warnings():  # an epoch column is never all-NaN; guard anyway
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(vals, axis=0)
    spread = final_spread(vals, mean, epochs) if own_runs else curve_spread(index)
    return ObjectiveMeans(epochs, vals, mean, spread)


def basis_of(spreads: dict[str, Spread]) -> str:
    """One label for both objectives; a not-identified objective names the whole interval."""
    missing = {o: s.basis for o, s in spreads.items() if not s.identified}
    shown = missing or {o: s.basis for o, s in spreads.items()}
    same = len(shown) == len(spreads) and len(set(shown.values())) == 1
    text = next(iter(shown.values())) if same else "; ".join(f"{o}: {b}" for o, b in shown.items())
    return f"not identified: {text}" if missing else text


def draw_means(
    means: dict[str, ObjectiveMeans], n_boot: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """Bootstrap draws of the per-epoch means of identified objectives: (points with one row per
    (objective, epoch), values (rows, B)), AR first, as the spline fits expect."""
    rows, draws = [], []
    for obj in OBJECTIVES:
        m = means[obj]
        if m.spread.kind == "resampled":
            boot = resampled_seeds(m.vals, m.mean, n_boot, rng)
        else:
            n = np.isfinite(m.vals).sum(axis=0)
            boot = pooled_draws(m.mean, n, m.spread, n_boot, rng)
        rows.append(pd.DataFrame({"objective": obj, "epoch": m.epochs, "y": m.mean}))
        draws.append(boot.T)
    return pd.concat(rows, ignore_index=True), np.vstack(draws)
