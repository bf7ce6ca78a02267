"""The adaptive sweep's actions on one (model, budget) group and the choice among them.

Rules first: an interval open at an edge is extended past the measured range
(``extend_action``); a closed interval read across settings more than ``max_gap`` apart is
filled in (``fill_action``). Then scored actions (``inner_actions``: a new setting inside the
range with ``entry_seeds`` seeds, or one more seed at a measured setting), each scored by its
expected log-width reduction per FLOP from fantasy refits (``analysis.adaptive.GroupModel``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from analysis.adaptive import (
    AcquisitionConfig,
    Action,
    Candidate,
    GroupModel,
    Interval,
    free_runs,
    interval_of,
    log_width,
    predicted_mean,
    settings_of,
)
from analysis.crossover import OBJECTIVES


def extend_action(
    iv: Interval,
    points: pd.DataFrame,
    candidates: list[Candidate],
    done: set[str],
    n_seeds: int,
    force: bool = False,
    ratio: float = 1.0,
) -> Action | None:
    """Both objectives at the next grid epoch beyond the range when the interval is open at
    that end (the first at least ``ratio`` x the range's edge, else the farthest, or /
    ``ratio`` below it: one far point, the settings between are then scored like any other);
    None when closed, unless ``force`` (every setting inside the range is used up: a point
    beyond it still steadies the curves there): then above, else below."""
    grid = sorted({c.epochs for c in candidates})
    have = settings_of(points)
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
        for r in free_runs(
            candidates, done, obj, target, max(n_seeds - have.get((obj, target), 0), 0)
        )
    )
    if not runs:
        return None
    state = "closed" if force and math.isfinite(iv.hi) and iv.lo > 0 else "open"
    why = f"interval {state} ({iv.describe()}): measure {where}, at {target:.3g}"
    return Action(candidates[0].group, "extend", runs, why=why)


def inner_actions(
    points: pd.DataFrame, candidates: list[Candidate], done: set[str], n_seeds: int
) -> list[Action]:
    """``new_setting`` (unmeasured epochs inside the measured range) and ``replicate`` actions."""
    have = settings_of(points)
    lo = max(min(e for o, e in have if o == obj) for obj in OBJECTIVES)
    hi = min(max(e for o, e in have if o == obj) for obj in OBJECTIVES)
    actions = []
    for obj in OBJECTIVES:
        for epochs in sorted({c.epochs for c in candidates if c.objective == obj}):
            if not lo <= epochs <= hi:
                continue
            n_have = have.get((obj, float(epochs)), 0)
            runs = free_runs(candidates, done, obj, epochs, 1 if n_have else n_seeds)
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
    antithetic (z, -z), so an action's score is not one lucky draw. An interval open above
    (scored only when no extension fits, or none is left) is scored by the expected rise of
    P(crossover) instead: it closes when 97.5% of the draws cross inside the range, and the
    log-width, stuck at its open value until then, gives two fantasies nothing to rank by."""
    rng = np.random.default_rng(cfg.seed)
    means = {
        (r.objective, r.epochs): predicted_mean(model.points, r.objective, r.epochs)
        for r in action.runs
    }
    closing = math.isinf(iv.hi) and math.isfinite(iv.p_crossover)
    # The reference is the current points refitted as the fantasies are (their draws, their
    # penalties), not the stop rule's interval: its other draws would shift every score alike.
    ref = model.reference
    now = _nan_to(ref.p_crossover, iv.p_crossover) if closing else log_width(ref, *grid)
    after, z = [], np.zeros(len(action.runs))
    for k in range(cfg.n_fantasies):
        z = rng.standard_normal(len(action.runs)) if k % 2 == 0 else -z
        fantasy = model.fantasy(action.runs, means, z)
        iv_f = interval_of(fantasy, n_boot=cfg.n_boot, seed=cfg.seed, lams=model.lams)
        after.append(_nan_to(iv_f.p_crossover, now) if closing else log_width(iv_f, *grid))
    gain = float(np.mean(after)) - now if closing else now - float(np.mean(after))
    what = "rise of P(crossover)" if closing else "log-width reduction"
    why = f"{action.kind}: expected {what} {gain:+.3f} for {action.flops:.3g} FLOPs"
    return Action(action.group, action.kind, action.runs, gain, why)


def _nan_to(x: float, default: float) -> float:
    return default if math.isnan(x) else x


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
    """Both objectives at ``coarse_gap``'s setting (``entry_seeds``, less those measured). An
    interval open above is read up to the top of the range (most of its draws cross there):
    its gaps count too when the extension beyond does not fit the budget."""
    if math.isinf(iv.hi) and math.isfinite(iv.epoch_max):
        iv = replace(iv, hi=iv.epoch_max)
    target = coarse_gap(points, iv, sorted({c.epochs for c in candidates}), cfg.max_gap)
    if target is None:
        return None
    have = settings_of(points)
    runs = tuple(
        r
        for obj in OBJECTIVES
        for r in free_runs(
            candidates, done, obj, target, max(cfg.entry_seeds - have.get((obj, target), 0), 0)
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
    budget: float = math.inf,
) -> list[Action]:
    """The next actions on one group that fit in ``budget`` FLOPs: extend an open interval,
    fill a coarse gap (both rules), else the ``per_group`` best-scoring actions near the
    interval per FLOP (the cheapest when none is expected to help). A rule's action that does
    not fit gives way to the other rule, then to the near actions that fit, one at a time:
    spending what is left near the crossover beats stopping with it unspent. Far settings
    are not a substitute for near ones that pass the budget (they buy noise)."""
    if not candidates:
        return []
    # Most draws already cross inside the range: the crossover is near its edge, one grid
    # step (max_gap) beyond brackets it; else jump extend_ratio and fill in what is needed.
    ratio = cfg.max_gap if iv.p_crossover >= 0.5 else cfg.extend_ratio
    seeds = cfg.entry_seeds
    rules = [
        extend_action(iv, group_points, candidates, done, seeds, ratio=ratio),
        fill_action(group_points, iv, candidates, done, cfg),
    ]
    rules = [a for a in rules if a is not None]
    fits = [a for a in rules if a.flops <= budget]
    if fits:  # the extension first; a gap in the range when the extension passes the budget
        return [fits[0] if fits[0] is rules[0] else _because(fits[0], _blocked(rules[0], budget))]
    if iv.status == "insufficient_data":
        return []
    epochs = sorted({c.epochs for c in candidates})
    inner = inner_actions(group_points, candidates, done, seeds)
    # Farther settings only once the bracketing ones are used up (not when they pass the
    # budget: then the far ones would only buy noise).
    near = near_interval(inner, iv, epochs) or inner
    chosen = [a for a in near if a.flops <= budget]
    model = GroupModel.of(group_points, cfg.n_boot, cfg.seed)
    scored = [score_action(a, model, iv, (epochs[0], epochs[-1]), cfg) for a in chosen]
    helpful = sorted((a for a in scored if a.expected_reduction > 0), key=lambda a: -a.score)
    if rules and scored:  # the rule's action passes the budget: one step at a time
        best = helpful[0] if helpful else min(scored, key=lambda a: a.flops)
        how = "best" if helpful else "none expected to help; cheapest"
        return [_because(best, f"{_blocked(rules[0], budget)}; {how} that fits: {best.why}")]
    if helpful:
        return helpful[: cfg.per_group]
    if not scored:
        forced = extend_action(iv, group_points, candidates, done, seeds, force=True)
        return [forced] if forced is not None and forced.flops <= budget else []
    # Near the interval, bootstrap noise in the estimate should not end the search early.
    cheapest = min(scored, key=lambda a: a.flops)
    why = f"no action expected to narrow the interval; cheapest first ({cheapest.why})"
    return [_because(cheapest, why)]


def _blocked(action: Action, budget: float) -> str:
    where = f"{action.kind} at {action.runs[0].epochs:.3g} epochs"
    return f"{where} ({action.flops:.3g} FLOPs) passes the {budget:.3g} FLOPs left"


def _because(action: Action, why: str) -> Action:
    return Action(action.group, action.kind, action.runs, action.expected_reduction, why)
