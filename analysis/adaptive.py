"""Acquisition for an adaptive sweep: the quantities its choices are scored on.

A study's grid is a set of candidate runs (objective x model x budget x epochs x seed). The
crossover of each (model, budget) group is ``analysis.crossover.locate_crossover`` on the final
losses of its completed runs, with the same bootstrap the report uses. Its width is measured as
``hi / lo - 1`` (relative: scale-free across budgets whose crossovers sit at different epochs);
an interval open at either edge has infinite width.

Here: the candidate, interval and action types, the knobs (``AcquisitionConfig``) and the model
fantasies are drawn from (``GroupModel``: the current curve plus the measured seed spread). The
actions and the choice among them are ``analysis.adaptive_actions``; the loop that dispatches
runs is ``analysis.adaptive_loop``. Functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.crossover import OBJECTIVES, locate_crossover
from analysis.curves import fit_smooth_curve
from analysis.errors import AnalysisError

Group = tuple[str, int]  # (model_name, unique_tokens)
METRIC = "val_loss"


@dataclass(frozen=True)
class Candidate:
    """One run of the study's grid; ``key`` is its run id (or any unique label)."""

    key: str
    label: str
    objective: str
    model_name: str
    unique_tokens: int
    epochs: float
    seed: int
    flops: float

    @property
    def group(self) -> Group:
        return (self.model_name, int(self.unique_tokens))


@dataclass(frozen=True)
class Interval:
    """A group's crossover: point, 95% interval and P(crossover) from ``locate_crossover``."""

    status: str
    epoch: float
    lo: float
    hi: float
    p_crossover: float
    epoch_max: float

    @property
    def rel_width(self) -> float:
        return relative_width(self.lo, self.hi)

    def describe(self) -> str:
        if self.status == "insufficient_data":
            return "no interval (too few settings)"
        if math.isnan(self.lo):  # the data do not pin the seed spread (e.g. one seed)
            point = f"{self.epoch:.3g}, " if math.isfinite(self.epoch) else ""
            return f"{point}95% interval not identified"
        if math.isinf(self.lo):  # every draw: AR still ahead at the end of the range
            return f"not crossed by {self.epoch_max:.3g} epochs P={self.p_crossover:.2f}"
        lo = "0" if self.lo == 0 else f"{self.lo:.3g}"
        hi = f"beyond {self.epoch_max:.3g}" if math.isinf(self.hi) else f"{self.hi:.3g}"
        point = f"{self.epoch:.3g} " if math.isfinite(self.epoch) else ""
        return f"{point}[{lo}, {hi}] P={self.p_crossover:.2f}"


UNKNOWN = Interval("insufficient_data", math.nan, math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class Action:
    """Runs proposed together, and why."""

    group: Group
    kind: str  # "extend" | "new_setting" | "replicate"
    runs: tuple[Candidate, ...]
    expected_reduction: float = math.nan  # of the log-width; NaN for "extend" (a rule)
    why: str = ""

    @property
    def flops(self) -> float:
        return float(sum(r.flops for r in self.runs))

    @property
    def score(self) -> float:
        return self.expected_reduction / self.flops if self.flops > 0 else -math.inf


def relative_width(lo: float, hi: float) -> float:
    """``hi / lo - 1``: 0.5 means the upper edge is 1.5x the lower; inf when open or unknown."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
        return math.inf
    return hi / lo - 1.0


def log_width(iv: Interval, e_min: float, e_max: float) -> float:
    """log(hi / lo) with open or unknown edges put at half the grid's lowest epoch and twice its
    highest: a finite score that still falls as an open interval closes."""
    lo = iv.lo if math.isfinite(iv.lo) and iv.lo > 0 else e_min / 2
    hi = iv.hi if math.isfinite(iv.hi) else 2 * e_max
    return math.log(max(hi, lo) / lo)


def interval_of(
    points: pd.DataFrame,
    *,
    n_boot: int,
    seed: int,
    lams: tuple[float | None, float | None] = (None, None),
) -> Interval:
    """The group's crossover from its points (columns of ``crossover.curve_points``)."""
    per_obj = points.groupby("objective")["epoch"].nunique()
    if any(per_obj.get(o, 0) < 2 for o in OBJECTIVES):
        return UNKNOWN
    try:
        res = locate_crossover(points, METRIC, n_boot=n_boot, seed=seed, lams=lams)
    except AnalysisError:
        return UNKNOWN
    return Interval(
        str(res["status"]),
        float(res["epoch"]),
        float(res["epoch_lo"]),
        float(res["epoch_hi"]),
        float(res["p_crossover"]),
        float(res["epoch_max"]),
    )


def seed_spread(points: pd.DataFrame, objective: str) -> float:
    """Seed-to-seed SD of one objective's final loss, pooled over settings with >= 2 seeds;
    else the larger of the reported SE and the spread around a straight line in log-epoch."""
    sub = points[points["objective"] == objective]
    by = sub.groupby("epoch")["y"]
    dev = (sub["y"] - by.transform("mean")).to_numpy()
    dof = int((by.count() - 1).clip(lower=0).sum())
    if dof >= 1:
        return float(math.sqrt((dev**2).sum() / dof))
    se = float(np.nanmedian(sub["se"])) if sub["se"].notna().any() else 0.0
    x, y = np.log(sub["epoch"].to_numpy(float)), sub["y"].to_numpy(float)
    resid = y - np.polyval(np.polyfit(x, y, 1), x) if len(x) > 2 else np.zeros(1)
    return max(se, float(np.std(resid)), 1e-6)


def predicted_mean(points: pd.DataFrame, objective: str, epoch: float) -> float:
    """The objective's loss at ``epoch`` from its current smooth curve; beyond the measured
    range, the straight line in log-epoch through its two outermost settings' means."""
    sub = points[points["objective"] == objective]
    means = sub.groupby("epoch")["y"].mean().sort_index()
    x = means.index.to_numpy(float)
    if x[0] <= epoch <= x[-1]:
        return float(
            fit_smooth_curve(sub["epoch"].to_numpy(float), sub["y"].to_numpy(float))(epoch)
        )
    i = [0, 1] if epoch < x[0] else [-2, -1]
    lx, ly = np.log(x[i]), means.to_numpy(float)[i]
    slope = (ly[1] - ly[0]) / (lx[1] - lx[0])
    return float(ly[0] + slope * (math.log(epoch) - lx[0]))


def curve_penalties(points: pd.DataFrame) -> tuple[float | None, float | None]:
    """Each objective's GCV penalty on the current points, reused for fantasy refits (None
    where the curve is linear, < 5 settings, or cannot be fitted: GCV then runs per refit)."""
    lams: list[float | None] = []
    for obj in OBJECTIVES:
        sub = points[points["objective"] == obj]
        try:
            curve = fit_smooth_curve(sub["epoch"].to_numpy(float), sub["y"].to_numpy(float))
        except AnalysisError:
            lams.append(None)
            continue
        lams.append(curve.lam if curve.kind == "spline" else None)
    return lams[0], lams[1]


@dataclass(frozen=True)
class GroupModel:
    """What fantasies of one group are drawn from, computed once per step: per objective the
    seed spread, median SE and FLOPs per epoch, and the current points; the curves' penalties;
    the interval of the current points refitted as a fantasy is (``reference``: the baseline
    a fantasy's interval is compared with, same draws and penalties)."""

    points: pd.DataFrame
    sigma: dict[str, float]
    se: dict[str, float]
    flops_per_epoch: dict[str, float]
    lams: tuple[float | None, float | None]
    reference: Interval = UNKNOWN

    @classmethod
    def of(cls, points: pd.DataFrame, n_boot: int = 100, seed: int = 0) -> GroupModel:
        sigma, se, fpe = {}, {}, {}
        for obj in OBJECTIVES:
            sub = points[points["objective"] == obj]
            sigma[obj] = seed_spread(points, obj)
            se[obj] = float(np.nanmedian(sub["se"])) if sub["se"].notna().any() else math.nan
            fpe[obj] = float(np.nanmedian(sub["flops"] / sub["epoch"]))
        lams = curve_penalties(points)
        reference = interval_of(points, n_boot=n_boot, seed=seed, lams=lams)
        return cls(points, sigma, se, fpe, lams, reference)

    def fantasy(
        self, runs: tuple[Candidate, ...], means: dict[tuple[str, float], float], z: np.ndarray
    ) -> pd.DataFrame:
        """The points plus one simulated outcome of ``runs``: mean + z * seed spread."""
        rows = [
            {
                "run_id": f"fantasy-{run.key}",
                "seed": run.seed,
                "objective": run.objective,
                "epoch": float(run.epochs),
                "y": means[(run.objective, run.epochs)] + self.sigma[run.objective] * zi,
                "se": self.se[run.objective],
                "flops": self.flops_per_epoch[run.objective] * run.epochs,
            }
            for run, zi in zip(runs, z, strict=True)
        ]
        return pd.concat([self.points, pd.DataFrame(rows)], ignore_index=True)


@dataclass(frozen=True)
class AcquisitionConfig:
    """Knobs of the acquisition; defaults argued in docs/design.md ("Adaptive sweep")."""

    min_seeds: int = 3  # seeds per setting of the seed design (they carry the spread's df)
    # Seeds a setting enters with after the seed design (at most min_seeds): 2, the fewest the
    # final-loss interval pools a spread from; replicates then add one run where it pays.
    new_seeds: int = 2
    n_fantasies: int = 2  # simulated outcomes per action
    n_boot: int = 100  # bootstrap draws per fantasy refit (the stop rule uses the report's 200)
    per_group: int = 2  # actions per group and step (2 cores: two runs at a time)
    step_ratio: float = 1.45  # seed design: each setting >= this x the one before
    extend_ratio: float = 4.0  # an open interval is extended to >= this x the range's edge
    max_gap: float = 2.0  # neighbouring settings around the interval at most this far apart
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("min_seeds", "new_seeds", "n_fantasies", "per_group"):
            if getattr(self, name) < 1:
                raise AnalysisError(f"{name}: must be >= 1, got {getattr(self, name)}")

    @property
    def entry_seeds(self) -> int:
        """Seeds of a setting first measured after the seed design."""
        return min(self.new_seeds, self.min_seeds)


def settings_of(points: pd.DataFrame) -> dict[tuple[str, float], int]:
    """(objective, epoch) -> number of completed seeds."""
    counts = points.groupby(["objective", "epoch"])["seed"].nunique()
    return {(str(o), float(e)): int(n) for (o, e), n in counts.items()}


def free_runs(
    candidates: list[Candidate], done: set[str], obj: str, epochs: float, n: int
) -> tuple[Candidate, ...]:
    """The lowest ``n`` seeds of one setting not yet run."""
    free = [
        c
        for c in candidates
        if c.objective == obj and math.isclose(c.epochs, epochs) and c.key not in done
    ]
    return tuple(sorted(free, key=lambda c: c.seed)[:n])
