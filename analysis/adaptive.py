"""Acquisition for an adaptive sweep: which runs most narrow the crossover interval per FLOP.

A study's grid is a set of candidate runs (objective x model x budget x epochs x seed). The
crossover of each (model, budget) group is ``analysis.crossover.locate_crossover`` on the final
losses of its completed runs, with the same bootstrap the report uses. Its width is measured as
``hi / lo - 1`` (relative: scale-free across budgets whose crossovers sit at different epochs);
an interval open at either edge has infinite width.

Actions on a group, each a few runs of the grid:

- ``extend``: the interval is open at the top (AR still ahead at the end of the measured range in
  some draws) or at the bottom: only a measurement beyond the range can close it, since the
  crossover module claims nothing outside the range both objectives were measured on. Both
  objectives get the next epoch setting beyond the range, ``min_seeds`` seeds each.
- ``new_setting``: an unmeasured epoch setting of one objective inside the range, ``min_seeds``
  seeds (every setting gets >= 3 seeds, so the interval resamples seeds, as it is calibrated for).
- ``replicate``: one more seed at a measured setting.

``new_setting`` and ``replicate`` are scored by the expected reduction of the log-width of the
bootstrap interval, estimated by refitting with simulated outcomes ("fantasies") drawn from the
current curve plus the measured seed spread, divided by the action's FLOPs. Functions here are
pure: the loop that dispatches runs is ``analysis.adaptive_loop``.
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
    seed spread, median SE and FLOPs per epoch, and the current points; the curves' penalties."""

    points: pd.DataFrame
    sigma: dict[str, float]
    se: dict[str, float]
    flops_per_epoch: dict[str, float]
    lams: tuple[float | None, float | None]

    @classmethod
    def of(cls, points: pd.DataFrame) -> GroupModel:
        sigma, se, fpe = {}, {}, {}
        for obj in OBJECTIVES:
            sub = points[points["objective"] == obj]
            sigma[obj] = seed_spread(points, obj)
            se[obj] = float(np.nanmedian(sub["se"])) if sub["se"].notna().any() else math.nan
            fpe[obj] = float(np.nanmedian(sub["flops"] / sub["epoch"]))
        return cls(points, sigma, se, fpe, curve_penalties(points))

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

    min_seeds: int = 3  # seeds per setting: the interval resamples seeds (calibrated at 3)
    n_fantasies: int = 2  # simulated outcomes per action
    n_boot: int = 100  # bootstrap draws per fantasy refit (the stop rule uses the report's 200)
    per_group: int = 2  # actions per group and step (2 cores: two runs at a time)
    step_ratio: float = 1.45  # seed design: each setting >= this x the one before
    extend_ratio: float = 4.0  # an open interval is extended to >= this x the range's edge
    max_gap: float = 2.0  # neighbouring settings around the interval at most this far apart
    seed: int = 0


def _settings(points: pd.DataFrame) -> dict[tuple[str, float], int]:
    """(objective, epoch) -> number of completed seeds."""
    counts = points.groupby(["objective", "epoch"])["seed"].nunique()
    return {(str(o), float(e)): int(n) for (o, e), n in counts.items()}


def _free_runs(
    candidates: list[Candidate], done: set[str], obj: str, epochs: float, n: int
) -> tuple[Candidate, ...]:
    """The lowest ``n`` seeds of one setting not yet run."""
    free = [
        c
        for c in candidates
        if c.objective == obj and math.isclose(c.epochs, epochs) and c.key not in done
    ]
    return tuple(sorted(free, key=lambda c: c.seed)[:n])


def extend_action(
    iv: Interval,
    points: pd.DataFrame,
    candidates: list[Candidate],
    done: set[str],
    min_seeds: int,
    force: bool = False,
    ratio: float = 1.0,
) -> Action | None:
    """Both objectives at the next grid epoch beyond the range when the interval is open at
    that end (the first at least ``ratio`` x the range's edge, else the farthest, or /
    ``ratio`` below it: one far point, the settings between are then scored like any other);
    None when closed, unless ``force`` (every setting inside the range is used up: a point
    beyond it still steadies the curves there): then above, else below."""
    grid = sorted({c.epochs for c in candidates})
    have = _settings(points)
    top = min(max((e for o, e in have if o == obj), default=0.0) for obj in OBJECTIVES)
    bottom = max(min((e for o, e in have if o == obj), default=math.inf) for obj in OBJECTIVES)
    if iv.status == "insufficient_data" or iv.status == "no_crossover" or math.isinf(iv.hi):
        above = [e for e in grid if e > top]
        far = [e for e in above if e >= ratio * top]
        target = far[0] if far else (above[-1] if above else None)
        where = f"above {top:.3g} epochs"
    elif iv.status == "dlm_ahead_throughout" or iv.lo == 0:
        below = [e for e in grid if e < bottom]
        below = [e for e in below if e * ratio <= bottom] or below[:1]
        target, where = (below[-1] if below else None), f"below {bottom:.3g} epochs"
    elif force:
        below = [e for e in grid if e < bottom]
        target = next((e for e in grid if e > top), below[-1] if below else None)
        where = "beyond the range (settings inside it used up)"
    else:
        return None
    if target is None:
        return None
    runs = tuple(
        r
        for obj in OBJECTIVES
        for r in _free_runs(
            candidates, done, obj, target, max(min_seeds - have.get((obj, target), 0), 0)
        )
    )
    if not runs:
        return None
    state = "closed" if force and math.isfinite(iv.hi) and iv.lo > 0 else "open"
    why = f"interval {state} ({iv.describe()}): measure {where}, at {target:.3g}"
    return Action(candidates[0].group, "extend", runs, why=why)


def inner_actions(
    points: pd.DataFrame, candidates: list[Candidate], done: set[str], min_seeds: int
) -> list[Action]:
    """``new_setting`` (unmeasured epochs inside the measured range) and ``replicate`` actions."""
    have = _settings(points)
    lo = max(min(e for o, e in have if o == obj) for obj in OBJECTIVES)
    hi = min(max(e for o, e in have if o == obj) for obj in OBJECTIVES)
    actions = []
    for obj in OBJECTIVES:
        for epochs in sorted({c.epochs for c in candidates if c.objective == obj}):
            if not lo <= epochs <= hi:
                continue
            n_have = have.get((obj, float(epochs)), 0)
            runs = _free_runs(candidates, done, obj, epochs, 1 if n_have else min_seeds)
            if runs:
                kind = "replicate" if n_have else "new_setting"
                actions.append(Action(candidates[0].group, kind, runs))
    return actions


def score_action(
    action: Action,
    model: GroupModel,
    iv: Interval,
    grid: tuple[float, float],
    cfg: AcquisitionConfig,
) -> Action:
    """The action with its expected log-width reduction: the mean over ``n_fantasies``
    simulated outcomes of log-width(now) - log-width(after refitting with them). Draws are
    antithetic (z, -z), so an action's score is not one lucky draw."""
    rng = np.random.default_rng(cfg.seed)
    means = {
        (r.objective, r.epochs): predicted_mean(model.points, r.objective, r.epochs)
        for r in action.runs
    }
    now = log_width(iv, *grid)
    after, z = [], np.zeros(len(action.runs))
    for k in range(cfg.n_fantasies):
        z = rng.standard_normal(len(action.runs)) if k % 2 == 0 else -z
        fantasy = model.fantasy(action.runs, means, z)
        iv_f = interval_of(fantasy, n_boot=cfg.n_boot, seed=cfg.seed, lams=model.lams)
        after.append(log_width(iv_f, *grid))
    reduction = now - float(np.mean(after))
    why = (
        f"{action.kind}: expected log-width reduction {reduction:+.3f} for {action.flops:.3g} FLOPs"
    )
    return Action(action.group, action.kind, action.runs, reduction, why)


def near_interval(actions: list[Action], iv: Interval, grid_epochs: list[float]) -> list[Action]:
    """Actions at the grid epochs that bracket the interval (the nearest setting below its lower
    edge, every one inside, the nearest above its upper edge): a spline's value at the crossover
    is set by its neighbours, so farther settings are not worth a refit."""
    below = [e for e in grid_epochs if e <= iv.lo] or grid_epochs[:1]
    above = [e for e in grid_epochs if e >= iv.hi] or grid_epochs[-1:]
    lo, hi = below[-1], above[0]
    return [a for a in actions if lo <= a.runs[0].epochs <= hi]


def coarse_gap(
    points: pd.DataFrame, iv: Interval, pool_epochs: list[float], max_gap: float
) -> float | None:
    """The pool setting to measure where the interval is bracketed too coarsely, or None.

    The interval resamples seeds only: between two settings far apart the spline's
    interpolation error is not in it, and an interval read across a 4x gap is narrow and can
    miss the truth (bench/RESULTS.md). So around a closed interval (from the last measured
    setting at or below its lower edge to the first at or above its upper edge) neighbouring
    settings of each objective must be at most ``max_gap`` apart (2: the grid's octaves);
    the widest wider gap is split at the pool setting nearest its geometric middle."""
    if not (math.isfinite(iv.lo) and math.isfinite(iv.hi) and iv.lo > 0):
        return None
    worst, split = max_gap, None
    for obj in OBJECTIVES:
        have = sorted(points.loc[points["objective"] == obj, "epoch"].unique())
        lo = max((e for e in have if e <= iv.lo), default=have[0])
        hi = min((e for e in have if e >= iv.hi), default=have[-1])
        inside = [e for e in have if lo <= e <= hi]
        for a, b in zip(inside, inside[1:], strict=False):
            between = [e for e in pool_epochs if a < e < b]
            if b / a > worst and between:
                mid = math.sqrt(a * b)
                worst, split = b / a, min(between, key=lambda e: abs(math.log(e / mid)))
    return split


def fill_action(
    points: pd.DataFrame,
    iv: Interval,
    candidates: list[Candidate],
    done: set[str],
    cfg: AcquisitionConfig,
) -> Action | None:
    """Both objectives at ``coarse_gap``'s setting (``min_seeds`` seeds, less those measured)."""
    target = coarse_gap(points, iv, sorted({c.epochs for c in candidates}), cfg.max_gap)
    if target is None:
        return None
    have = _settings(points)
    runs = tuple(
        r
        for obj in OBJECTIVES
        for r in _free_runs(
            candidates, done, obj, target, max(cfg.min_seeds - have.get((obj, target), 0), 0)
        )
    )
    if not runs:
        return None
    why = (
        f"interval {iv.describe()} read across settings more than {cfg.max_gap:g}x apart: "
        f"measure {target:.3g} epochs"
    )
    return Action(candidates[0].group, "fill", runs, why=why)


def propose(
    group_points: pd.DataFrame,
    iv: Interval,
    candidates: list[Candidate],
    done: set[str],
    cfg: AcquisitionConfig,
) -> list[Action]:
    """The next actions on one group: extend an open interval, fill a coarse gap around a
    closed one (both rules), else the ``per_group`` best-scoring inner actions per FLOP (the
    cheapest when none is expected to help)."""
    if not candidates:
        return []
    # Most draws already cross inside the range: the crossover is near its edge, one grid
    # step (max_gap) beyond brackets it; else jump extend_ratio and fill in what is needed.
    ratio = cfg.max_gap if iv.p_crossover >= 0.5 else cfg.extend_ratio
    action = extend_action(
        iv, group_points, candidates, done, cfg.min_seeds, ratio=ratio
    ) or fill_action(group_points, iv, candidates, done, cfg)
    if action is not None or iv.status == "insufficient_data":
        return [action] if action is not None else []
    epochs = sorted({c.epochs for c in candidates})
    model = GroupModel.of(group_points)
    inner = inner_actions(group_points, candidates, done, cfg.min_seeds)
    # Farther settings only once the bracketing ones are used up.
    chosen = near_interval(inner, iv, epochs) or inner
    scored = [score_action(a, model, iv, (epochs[0], epochs[-1]), cfg) for a in chosen]
    helpful = sorted((a for a in scored if a.expected_reduction > 0), key=lambda a: -a.score)
    if helpful:
        return helpful[: cfg.per_group]
    if not scored:
        forced = extend_action(iv, group_points, candidates, done, cfg.min_seeds, force=True)
        return [forced] if forced is not None else []
    cheapest = min(scored, key=lambda a: a.flops)
    why = f"no action expected to narrow the interval; cheapest first ({cheapest.why})"
    return [Action(cheapest.group, cheapest.kind, cheapest.runs, cheapest.expected_reduction, why)]
