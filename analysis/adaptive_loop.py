"""The adaptive sweep's loop: seed design, then choose -> run -> re-fit until narrow enough.

The loop knows nothing of Ray or Prefect: it is given the grid (``Candidate``s), a ``run``
callable that trains a batch and returns when its results can be observed, and an ``observe``
callable that returns the final losses of every completed run (one row per run, the columns
of ``crossover.curve_points`` plus model_name and unique_tokens). ``flows.adaptive`` passes the
real dispatch + ingest; tests and the benchmark pass a draw from a planted law. Every decision,
the stop included, is a ``Step`` (DuckDB table ``adaptive_steps``, docs/schema.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from analysis.adaptive import (
    UNKNOWN,
    AcquisitionConfig,
    Action,
    Candidate,
    Group,
    Interval,
    interval_of,
)
from analysis.adaptive_actions import coarse_gap, propose
from analysis.adaptive_rdstar import (
    batch_target,
    crossover_expected,
    describe_states,
    rd_star_states,
    with_rd_star,
)
from analysis.crossover_store import BOOT_SEED, N_BOOT
from analysis.errors import AnalysisError


@dataclass(frozen=True)
class AdaptiveConfig:
    """Stop rule and design: stop when every group's relative width ``hi/lo - 1`` is at most
    ``target_width``, or no run near a wider one fits under ``compute_cap`` FLOPs (None: no
    cap; a rule's batch that does not fit gives way to one that does: ``propose``)."""

    target_width: float
    compute_cap: float | None = None
    seed_epochs: int = 3  # lowest epoch settings of the grid in the seed design
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    n_boot: int = N_BOOT  # draws of the interval the stop rule reads (the report's)
    boot_seed: int = BOOT_SEED
    # Steps a group's width must stay <= target after first reaching it (0: stop at once).
    # Stopping the first time a noisy interval dips under the target is optional stopping.
    confirm_steps: int = 0
    # Also narrow each objective's R_D* interval to hi/lo - 1 <= this where it is identified
    # (``analysis.adaptive_rdstar``); None: R_D* is only logged.
    rd_star_width: float | None = None

    def __post_init__(self) -> None:
        if not self.target_width > 0:
            raise AnalysisError(f"target_width: must be > 0, got {self.target_width}")
        if self.compute_cap is not None and not self.compute_cap > 0:
            raise AnalysisError(f"compute_cap: must be > 0 FLOPs, got {self.compute_cap}")
        if self.seed_epochs < 3:
            raise AnalysisError(
                f"seed_epochs: need >= 3 (final-loss curves), got {self.seed_epochs}"
            )
        if self.confirm_steps < 0:
            raise AnalysisError(f"confirm_steps: must be >= 0, got {self.confirm_steps}")
        if self.rd_star_width is not None and not self.rd_star_width > 0:
            raise AnalysisError(f"rd_star_width: must be > 0, got {self.rd_star_width}")


@dataclass(frozen=True)
class Step:
    """One decision: the runs chosen (none for the stop), why, and the intervals around it."""

    step: int
    kind: str  # "seed_design" | "acquire" | "stop"
    run_ids: str
    runs: str
    n_runs: int
    batch_flops: float
    expected_reduction: float
    why: str
    interval_before: str
    interval_after: str
    max_width_before: float
    max_width_after: float
    compute_spent: float
    rd_star: str = ""  # R_D* per objective after the step (``describe_rd_star``), "" if not asked
    target: str = ""  # what the batch was chosen for: crossover, rd_star or crossover+rd_star


@dataclass(frozen=True)
class AdaptiveResult:
    steps: list[Step]
    intervals: dict[Group, Interval]
    compute_spent: float
    stop_reason: str

    def table(self) -> pd.DataFrame:
        return steps_frame(self.steps)


def steps_frame(steps: list[Step]) -> pd.DataFrame:
    cols = list(Step.__dataclass_fields__)
    return pd.DataFrame([asdict(s) for s in steps], columns=cols)


OBSERVED_COLUMNS = [
    "run_id",
    "seed",
    "objective",
    "model_name",
    "unique_tokens",
    "epoch",
    "y",
    "se",
    "flops",
]


def final_points(evals: pd.DataFrame) -> pd.DataFrame:
    """The observation ``run_adaptive`` reads, from the store's ``eval_points`` view: the final
    validation loss of each completed run (its last evaluation, as ``crossover.curve_points``
    takes in final-loss mode), one row per run. ``epoch`` is the run's planned epochs (its last
    evaluation is at the end of training, within one optimizer step of it), so observed
    settings match the grid's."""
    if evals.empty:
        return pd.DataFrame(columns=OBSERVED_COLUMNS)
    last = evals.sort_values("step").groupby("run_id").tail(1)
    se = last["val_loss_se"] if "val_loss_se" in last else pd.Series(float("nan"), last.index)
    return pd.DataFrame(
        {
            "run_id": last["run_id"],
            "seed": last["seed"],
            "objective": last["objective"],
            "model_name": last["model_name"],
            "unique_tokens": last["unique_tokens"].astype(int),
            "epoch": last["run_epochs"].astype(float),
            "y": last["val_loss"].astype(float),
            "se": se.astype(float),
            "flops": last["flops"].astype(float),
            "n_params": last["n_params"].astype(float) if "n_params" in last else math.nan,
            "tokens": last["tokens_seen"].astype(float) if "tokens_seen" in last else math.nan,
        }
    ).reset_index(drop=True)


def spread_settings(epochs: list[float], n: int, ratio: float) -> list[float]:
    """The lowest ``n`` settings with each at least ``ratio`` x the one before: a half-octave
    pool (4, 5.66, 8, ...) seeds 4, 8, 16, a grid of 2, 4, 6, 8 seeds 2, 4, 6 (ratio 1.45)."""
    chosen: list[float] = []
    for e in sorted(epochs):
        if len(chosen) < n and (not chosen or e >= ratio * chosen[-1]):
            chosen.append(e)
    return chosen


def seed_design(candidates: list[Candidate], cfg: AdaptiveConfig) -> list[Candidate]:
    """Per (objective, model, budget): the lowest ``seed_epochs`` epoch settings of the grid
    (the cheapest runs) spaced at least ``acquisition.step_ratio`` apart, ``min_seeds`` seeds
    each."""
    chosen = []
    keys = {(c.objective, c.model_name, c.unique_tokens) for c in candidates}
    for obj, model, u in sorted(keys):
        mine = [
            c for c in candidates if (c.objective, c.model_name, c.unique_tokens) == (obj, model, u)
        ]
        settings = spread_settings(
            list({c.epochs for c in mine}), cfg.seed_epochs, cfg.acquisition.step_ratio
        )
        for epochs in settings:
            runs = sorted((c for c in mine if c.epochs == epochs), key=lambda c: c.seed)
            chosen += runs[: cfg.acquisition.min_seeds]
    return chosen


def group_intervals(
    observed: pd.DataFrame, groups: list[Group], cfg: AdaptiveConfig
) -> dict[Group, Interval]:
    out = {}
    for g in groups:
        pts = observed[(observed["model_name"] == g[0]) & (observed["unique_tokens"] == g[1])]
        out[g] = interval_of(pts.reset_index(drop=True), n_boot=cfg.n_boot, seed=cfg.boot_seed)
    return out


def _describe(intervals: dict[Group, Interval]) -> str:
    return "; ".join(f"{m} U={u:,}: {iv.describe()}" for (m, u), iv in intervals.items())


def _max_width(intervals: dict[Group, Interval]) -> float:
    return max((iv.rel_width for iv in intervals.values()), default=math.inf)


def choose_batch(
    observed: pd.DataFrame,
    intervals: dict[Group, Interval],
    candidates: list[Candidate],
    done: set[str],
    cfg: AdaptiveConfig,
    settled: set[Group] | None = None,
    budget: float = math.inf,
) -> list[Action]:
    """Actions on each group not ``settled`` (default: those still wider than the target),
    each fitting in ``budget`` FLOPs: extends first, then by score."""
    if settled is None:
        settled = {g for g, iv in intervals.items() if iv.rel_width <= cfg.target_width}
    actions = []
    for g, iv in intervals.items():
        if g in settled:
            continue
        pts = observed[(observed["model_name"] == g[0]) & (observed["unique_tokens"] == g[1])]
        mine = [c for c in candidates if c.group == g]
        actions += propose(pts.reset_index(drop=True), iv, mine, done, cfg.acquisition, budget)
    rules = ("extend", "fill")  # no score: an open or coarsely read interval comes first
    return sorted(
        actions, key=lambda a: (a.kind not in rules, 0.0 if a.kind in rules else -a.score)
    )


def _fit_cap(actions: list[Action], spent: float, cap: float | None) -> list[Action]:
    """The actions, in order, that fit under the compute cap together."""
    kept, total = [], spent
    for a in actions:
        if cap is None or total + a.flops <= cap:
            kept.append(a)
            total += a.flops
    return kept


def run_adaptive(
    candidates: list[Candidate],
    run: Callable[[list[Candidate]], None],
    observe: Callable[[], pd.DataFrame],
    cfg: AdaptiveConfig,
    on_step: Callable[[list[Step]], None] | None = None,
    laws: Callable[[pd.DataFrame], str] | None = None,
) -> AdaptiveResult:
    """Seed design, then one batch per step until the stop rule; ``on_step`` gets the whole
    log after each step (the flow writes it to DuckDB, so a crash keeps what was decided)."""
    if not candidates:
        raise AnalysisError("adaptive sweep: the grid has no runs")
    by_key = {c.key: c for c in candidates}
    groups = sorted({c.group for c in candidates})
    steps: list[Step] = []
    before = {g: UNKNOWN for g in groups}
    attempted: set[str] = set()  # a failed run is not proposed again
    streak = {g: 0 for g in groups}  # consecutive steps at or under the target
    batch, kind, expected = seed_design(candidates, cfg), "seed_design", math.nan
    target = "seed design"
    why = (
        f"seed design: lowest {cfg.seed_epochs} epoch settings x {cfg.acquisition.min_seeds} "
        "seeds per objective, model and budget"
    )
    while True:
        if batch:
            run(batch)
            attempted |= {c.key for c in batch}
        # Only the runs this loop chose: a rerun then replays the same decisions on the
        # finished runs (each skipped by the dispatcher) and resumes where it stopped.
        observed = observe()
        observed = observed[observed["run_id"].isin(attempted)].reset_index(drop=True)
        after = group_intervals(observed, groups, cfg)
        spent = _spent(observed, by_key)
        rd = rd_star_states(observed) if cfg.rd_star_width is not None else None
        note = describe_states(rd) if rd is not None else (laws(observed) if laws else "")
        step = _step(len(steps), kind, batch, expected, why, before, after, spent)
        steps.append(replace(step, rd_star=note, target=target))
        if on_step:
            on_step(steps)
        met = narrow_enough(observed, after, candidates, cfg)
        streak = {g: streak[g] + 1 if g in met else 0 for g in groups}
        settled = {g for g in groups if streak[g] > cfg.confirm_steps}
        reason, actions = _next(
            observed, after, candidates, attempted | set(observed["run_id"]), cfg, spent, settled
        )
        if rd is not None:  # R_D* per objective as a second target
            done = attempted | set(observed["run_id"])
            reason, actions = with_rd_star(
                reason, actions, rd, observed, candidates, done, cfg, spent
            )
        if reason:
            steps.append(_step(len(steps), "stop", [], math.nan, reason, after, after, spent))
            if on_step:
                on_step(steps)
            return AdaptiveResult(steps, after, spent, reason)
        before, kind = after, "acquire"
        batch = [r for a in actions for r in a.runs]
        expected, target = crossover_expected(actions), batch_target(actions)
        why = " | ".join(f"{a.group[0]} U={a.group[1]:,}: {a.why}" for a in actions)


def narrow_enough(
    observed: pd.DataFrame,
    intervals: dict[Group, Interval],
    candidates: list[Candidate],
    cfg: AdaptiveConfig,
) -> set[Group]:
    """Groups at or under the target width whose interval is not read across a coarse gap
    (``analysis.adaptive.coarse_gap``)."""
    met = set()
    for g, iv in intervals.items():
        if iv.rel_width > cfg.target_width:
            continue
        pts = observed[(observed["model_name"] == g[0]) & (observed["unique_tokens"] == g[1])]
        pool = sorted({c.epochs for c in candidates if c.group == g})
        if coarse_gap(pts, iv, pool, cfg.acquisition.max_gap) is None:
            met.add(g)
    return met


def _spent(observed: pd.DataFrame, by_key: dict[str, Candidate]) -> float:
    """Planned FLOPs of every completed run of the grid (the cost the cap counts)."""
    return float(sum(by_key[k].flops for k in set(observed["run_id"]) if k in by_key))


def _next(
    observed: pd.DataFrame,
    intervals: dict[Group, Interval],
    candidates: list[Candidate],
    done: set[str],
    cfg: AdaptiveConfig,
    spent: float,
    settled: set[Group],
) -> tuple[str, list[Action]]:
    """('', actions) to go on, or (why we stop, [])."""
    if len(settled) == len(intervals):
        held = f", held for {cfg.confirm_steps} confirming step(s)" if cfg.confirm_steps else ""
        return (
            f"target reached: every interval's width hi/lo - 1 <= {cfg.target_width:g}{held}",
            [],
        )
    left = math.inf if cfg.compute_cap is None else cfg.compute_cap - spent
    actions = choose_batch(observed, intervals, candidates, done, cfg, settled, left)
    kept = _fit_cap(actions, spent, cfg.compute_cap)
    if kept:
        return "", kept
    if math.isfinite(left) and choose_batch(observed, intervals, candidates, done, cfg, settled):
        return (
            f"compute cap: no run near the intervals fits the {max(left, 0):.3g} FLOPs left "
            f"under {cfg.compute_cap:.3g} (spent {spent:.3g})"
        ), []
    return "grid exhausted: no run left near the intervals still wider than the target", []


def _step(
    i: int,
    kind: str,
    batch: list[Candidate],
    expected: float,
    why: str,
    before: dict[Group, Interval],
    after: dict[Group, Interval],
    spent: float,
) -> Step:
    return Step(
        step=i,
        kind=kind,
        run_ids=",".join(c.key for c in batch),
        runs=", ".join(c.label for c in batch),
        n_runs=len(batch),
        batch_flops=float(sum(c.flops for c in batch)),
        expected_reduction=expected,
        why=why,
        interval_before=_describe(before),
        interval_after=_describe(after),
        max_width_before=_max_width(before),
        max_width_after=_max_width(after),
        compute_spent=spent,
    )


def describe_rd_star(observed: pd.DataFrame) -> str:
    """R_D* per objective from a law fit on the observed final losses (profile interval, no
    bootstrap: it runs every step), or why it is not identified (one model size, as on a CPU)."""
    from analysis.fits import fit_data_constrained_law

    parts = []
    for obj in ("ar", "dlm"):
        pts = observed[observed["objective"] == obj].rename(columns={"y": "loss"})
        try:
            fit = fit_data_constrained_law(pts, obj, n_boot=0)
        except AnalysisError as err:
            parts.append(f"{obj}: {err}")
            continue
        parts.append(f"{obj}: {fit.estimates['rd_star'].describe()}")
    return "; ".join(parts)


def read_adaptive_steps(store: Any) -> pd.DataFrame | None:
    """The store's ``adaptive_steps`` table, or None when no adaptive sweep wrote one."""
    found = store.query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'adaptive_steps'"
    )
    if not int(found["n"].iloc[0]):
        return None
    return store.query("SELECT * FROM adaptive_steps ORDER BY step")


def adaptive_display(steps: pd.DataFrame) -> pd.DataFrame:
    """The report's small table: one row per decision, widths and compute as short text."""
    return pd.DataFrame(
        {
            "step": steps["step"],
            "decision": steps["kind"],
            "runs": steps["n_runs"],
            "why": steps["why"],
            "interval after": steps["interval_after"],
            "width after (hi/lo - 1)": [f"{w:.3f}" for w in steps["max_width_after"]],
            "compute spent (FLOPs)": [f"{c:.3e}" for c in steps["compute_spent"]],
            "R_D* after": steps["rd_star"] if "rd_star" in steps else "",
        }
    )
