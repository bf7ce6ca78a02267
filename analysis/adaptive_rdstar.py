"""R_D* per objective as a target of the adaptive sweep: a linearised (c-optimal) design.

Refitting the data-constrained law per simulated outcome costs seconds (``analysis.fits``), so
candidate runs are scored at the current fit instead. With theta the law's seven parameters
(``analysis.law_objective.NAMES``), J the Jacobian of the predicted log-loss of runs w.r.t.
theta (central differences, one vectorised pass) and sigma the residual scale of the fit:

    F = sum_i j_i j_i^T / sigma^2 + P          (P: a weak prior, SD 10 per parameter, so that
                                                directions no run pins, e.g. R_N*, stay finite)
    Var(log R_D*) ~ [F^-1]_{rd,rd}              (g = e_rd: log R_D* is itself a parameter)

Adding runs adds their j j^T / sigma^2 to F; no refit. The predicted interval width after runs
is the fit's own log-width (profile likelihood) times the ratio of linearised SDs after and now
(the ratio carries the Huber scale and the interval's calibration). An action's score is the
expected drop of log(hi / lo) per FLOP. Where R_D* is not identified (fewer than 3 sizes, or
the profile stays open at an edge) nothing is scored: the state says "not identified".
Validated against actual refits on planted truth in ``bench/bench_adaptive_rdstar.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analysis.adaptive import AcquisitionConfig, Action, Candidate, free_runs
from analysis.crossover import OBJECTIVES
from analysis.errors import AnalysisError
from analysis.fits import IDENTIFIED, fit_data_constrained_law, theta_of
from analysis.law_objective import NAMES, LawData

if TYPE_CHECKING:  # the loop imports this module
    from analysis.adaptive_loop import AdaptiveConfig

RD = NAMES.index("log_rd")
PRIOR_PRECISION = 1e-2  # per parameter (theta units): prior SD 10, far wider than any fit
FD_STEP = 1e-5  # central-difference step in theta units
# An action must be predicted to cut at least this share of the log-width: per FLOP, a very
# cheap run that does nothing (one more first-epoch seed) otherwise takes a slot of the batch.
MIN_GAIN = 0.02
RD_KIND = "rd_star"


@dataclass(frozen=True)
class RdStarState:
    """R_D* of one objective at one step: the fit's 95% interval and what the design needs
    (theta, the residual scale, the observed runs' (N, D, U)), or only why it is not identified."""

    objective: str
    status: str
    value: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    theta: tuple[float, ...] = ()
    sigma: float = math.nan
    design: tuple[tuple[float, float, float], ...] = ()  # (N, D, U) of each observed run

    @property
    def identified(self) -> bool:
        return self.status == IDENTIFIED

    @property
    def log_width(self) -> float:
        return math.log(self.hi / self.lo) if self.identified else math.inf

    @property
    def rel_width(self) -> float:
        return self.hi / self.lo - 1.0 if self.identified else math.inf

    def describe(self) -> str:
        if not self.identified:
            return f"{self.objective}: {self.status}"
        return (
            f"{self.objective}: {self.value:.4g} [{self.lo:.3g}, {self.hi:.3g}] "
            f"(hi/lo - 1 = {self.rel_width:.2f})"
        )


def law_points(observed: pd.DataFrame, objective: str) -> pd.DataFrame:
    """One objective's observed runs in the law fit's columns (tokens = epochs x U when the
    observation has no token count)."""
    sub = observed[observed["objective"] == objective]
    tokens = sub["epoch"].astype(float) * sub["unique_tokens"].astype(float)
    if "tokens" in sub:
        tokens = sub["tokens"].astype(float).where(sub["tokens"].notna(), tokens)
    n = sub["n_params"].astype(float) if "n_params" in sub else math.nan
    return pd.DataFrame(
        {
            "run_id": sub["run_id"],
            "n_params": n,
            "tokens": tokens,
            "unique_tokens": sub["unique_tokens"].astype(float),
            "loss": sub["y"].astype(float),
        }
    ).reset_index(drop=True)


def rd_star_state(observed: pd.DataFrame, objective: str, n_starts: int = 5) -> RdStarState:
    """Fit the objective's law (no bootstrap: profile interval) and keep what scoring needs."""
    pts = law_points(observed, objective)
    try:
        fit = fit_data_constrained_law(pts, objective, n_boot=0, n_starts=n_starts)
    except AnalysisError as err:
        return RdStarState(objective, f"not identified: {err}")
    est = fit.estimates["rd_star"]
    if not est.identified or fit.params is None:
        return RdStarState(objective, est.status)
    if est.lo is None or est.hi is None or est.lo <= 0 or math.isinf(est.hi):
        return RdStarState(objective, f"not identified: interval open ({est.describe()})")
    theta = theta_of(fit.params)
    data = LawData.from_frame(pts[pts["n_params"].notna()])
    resid = data.residuals(theta[None, :])
    sigma = max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), 1e-4)
    design = tuple(zip(np.exp(data.log_n), np.exp(data.log_d), np.exp(data.log_u), strict=True))
    return RdStarState(
        objective, IDENTIFIED, float(est.value), est.lo, est.hi, tuple(theta), sigma, design
    )


def rd_star_states(observed: pd.DataFrame) -> dict[str, RdStarState]:
    return {obj: rd_star_state(observed, obj) for obj in OBJECTIVES}


def log_loss_jacobian(theta: NDArray[np.float64], runs: NDArray[np.float64]) -> NDArray[np.float64]:
    """d log L_pred / d theta at ``theta`` for runs (m, 3) of (N, D, U) -> (m, 7)."""
    logs = np.log(np.atleast_2d(np.asarray(runs, float)))
    data = LawData(logs[:, 0], logs[:, 1], logs[:, 2], np.zeros(len(logs)))
    step = FD_STEP * np.eye(len(NAMES))
    pred = data.predict_log(np.vstack([theta + step, theta - step]))  # (14, m)
    k = len(NAMES)
    return ((pred[:k] - pred[k:]) / (2 * FD_STEP)).T


def information(
    theta: NDArray[np.float64], runs: NDArray[np.float64], sigma: float
) -> NDArray[np.float64]:
    """Fisher information of independent runs (N, D, U) with log-loss noise ``sigma``: (7, 7)."""
    if len(runs) == 0:
        return np.zeros((len(NAMES), len(NAMES)))
    j = log_loss_jacobian(theta, runs)
    return j.T @ j / sigma**2


def log_rd_sd(info: NDArray[np.float64]) -> float:
    """Linearised SD of log R_D* given the information ``info`` (plus the weak prior)."""
    cov = np.linalg.inv(info + PRIOR_PRECISION * np.eye(len(info)))
    return float(math.sqrt(max(cov[RD, RD], 0.0)))


def predicted_log_width(state: RdStarState, added: NDArray[np.float64]) -> float:
    """The R_D* interval's log(hi / lo) predicted after adding runs (N, D, U), no refit."""
    if not state.identified:
        return math.inf
    theta = np.asarray(state.theta)
    base = information(theta, np.asarray(state.design), state.sigma)
    new = base + information(theta, np.asarray(added, float).reshape(-1, 3), state.sigma)
    return state.log_width * log_rd_sd(new) / log_rd_sd(base)


def model_sizes(observed: pd.DataFrame) -> dict[str, float]:
    """model_name -> parameter count, from the observed runs (a model not yet run is absent)."""
    if "n_params" not in observed or observed.empty:
        return {}
    sizes = observed.dropna(subset=["n_params"]).groupby("model_name")["n_params"].median()
    return {str(k): float(v) for k, v in sizes.items()}


def run_design(runs: list[Candidate], sizes: dict[str, float]) -> NDArray[np.float64]:
    """(N, D, U) of candidate runs whose model size is known: shape (m, 3)."""
    rows = [
        (sizes[c.model_name], c.epochs * c.unique_tokens, float(c.unique_tokens))
        for c in runs
        if c.model_name in sizes
    ]
    return np.asarray(rows, float).reshape(-1, 3)


def candidate_actions(
    objective: str,
    candidates: list[Candidate],
    done: set[str],
    measured: set[tuple],
    min_seeds: int,
) -> list[tuple[str, tuple[Candidate, ...]]]:
    """Per (model, budget, epochs) setting of the objective: one more seed where the setting
    was run ("replicate"), else ``min_seeds`` seeds ("new_setting", as the crossover's actions:
    its interval resamples seeds)."""
    out = []
    settings = {
        (c.model_name, c.unique_tokens, c.epochs) for c in candidates if c.objective == objective
    }
    for model, u, e in sorted(settings):
        mine = [c for c in candidates if (c.model_name, c.unique_tokens) == (model, u)]
        seen = (objective, model, u, e) in measured
        runs = free_runs(mine, done, objective, e, 1 if seen else min_seeds)
        if runs:
            out.append(("replicate" if seen else "new_setting", runs))
    return out


def rd_star_actions(
    state: RdStarState,
    observed: pd.DataFrame,
    candidates: list[Candidate],
    done: set[str],
    acq: AcquisitionConfig,
    chosen: tuple[Candidate, ...] = (),  # this step's batch so far: its information counts
) -> list[Action]:
    """Up to ``acq.per_group`` actions for the objective's R_D*, greedily: each maximises the
    predicted drop of log(hi/lo) per FLOP given the runs observed, already chosen and picked
    before it, if it is predicted to cut at least ``MIN_GAIN`` of the log-width. Empty when
    R_D* is not identified or no run is expected to help."""
    if not state.identified:
        return []
    sizes = model_sizes(observed)
    theta, sigma = np.asarray(state.theta), state.sigma
    info = information(theta, np.asarray(state.design), sigma)
    sd_now = log_rd_sd(info)
    mine = [c for c in chosen if c.objective == state.objective]
    info = info + information(theta, run_design(mine, sizes), sigma)
    measured = {(c.objective, c.model_name, c.unique_tokens, c.epochs) for c in mine}
    measured |= {
        (str(r.objective), str(r.model_name), int(r.unique_tokens), float(r.epoch))
        for r in observed.itertuples()
    }
    taken = done | {c.key for c in chosen}
    options = candidate_actions(state.objective, candidates, taken, measured, acq.min_seeds)
    picked: list[Action] = []
    picked_keys: set[str] = set()
    for _ in range(acq.per_group):
        sd_base, best = log_rd_sd(info), None
        for kind, runs in options:
            x = run_design(list(runs), sizes)
            if not len(x) or any(r.key in picked_keys for r in runs):
                continue
            gain = (
                state.log_width
                * (sd_base - log_rd_sd(info + information(theta, x, sigma)))
                / sd_now
            )
            flops = float(sum(r.flops for r in runs))
            if gain > MIN_GAIN * state.log_width and (best is None or gain / flops > best[0]):
                best = (gain / flops, gain, kind, runs, x)
        if best is None:
            break
        _, gain, kind, runs, x = best
        info = info + information(theta, x, sigma)
        picked_keys |= {r.key for r in runs}
        after = state.log_width * log_rd_sd(info) / sd_now
        why = (
            f"R_D* ({state.objective}): {kind} {runs[0].label} x{len(runs)}: predicted "
            f"log(hi/lo) {state.log_width:.3f} -> {after:.3f} (linearised at the fit)"
        )
        picked.append(Action(runs[0].group, RD_KIND, runs, gain, why))
    return picked


def stop_note(states: dict[str, RdStarState], width: float) -> str:
    """Why R_D* does not hold the sweep: met, or not identified (then not targeted)."""
    parts = []
    for s in states.values():
        if s.identified:
            parts.append(f"{s.objective} hi/lo - 1 = {s.rel_width:.2f} <= {width:g}")
        else:
            parts.append(f"{s.objective} not targeted ({s.status})")
    return "R_D*: " + ", ".join(parts)


def with_rd_star(
    reason: str,
    actions: list[Action],
    states: dict[str, RdStarState],
    observed: pd.DataFrame,
    candidates: list[Candidate],
    done: set[str],
    cfg: AdaptiveConfig,
    spent: float,
) -> tuple[str, list[Action]]:
    """The loop's (stop reason, actions) with R_D* as a second target: actions for each
    objective whose identified R_D* interval is wider than ``cfg.rd_star_width`` join the
    crossover's (scored given the crossover's runs) while the compute cap allows. The sweep
    stops only when the crossover's rule stops it and no R_D* is still too wide."""
    width, acq = float(cfg.rd_star_width or math.inf), cfg.acquisition
    room = math.inf if cfg.compute_cap is None else cfg.compute_cap - spent
    if reason.startswith("compute cap"):
        return reason, actions
    wide = [s for s in states.values() if s.identified and s.rel_width > width]
    if not wide:
        return (f"{reason}; {stop_note(states, width)}" if reason else ""), actions
    chosen = tuple(r for a in actions for r in a.runs)
    room -= sum(a.flops for a in actions)
    extra: list[Action] = []
    for s in wide:
        for a in rd_star_actions(s, observed, candidates, done, acq, chosen):
            if a.flops <= room:
                extra.append(a)
                chosen = (*chosen, *a.runs)
                room -= a.flops
    if reason and not extra:
        names = ", ".join(f"{s.objective} {s.rel_width:.2f}" for s in wide)
        return (
            f"{reason}; R_D* still wider than {width:g} ({names}): "
            "no run left to narrow it within the cap",
            [],
        )
    return "", actions + extra


def describe_states(states: dict[str, RdStarState]) -> str:
    return "; ".join(s.describe() for s in states.values())


def crossover_expected(actions: list[Action]) -> float:
    """Expected drop of the crossover's log-width over a batch (R_D* actions' drops are of
    another interval and stay in their ``why``)."""
    return float(
        sum(
            a.expected_reduction
            for a in actions
            if math.isfinite(a.expected_reduction) and a.kind != RD_KIND
        )
    )


def batch_target(actions: list[Action]) -> str:
    """Which target motivated a batch: 'crossover', 'rd_star' or 'crossover+rd_star'."""
    kinds = {RD_KIND if a.kind == RD_KIND else "crossover" for a in actions}
    return "+".join(sorted(kinds))
