"""R_D* as an acquisition target (analysis.adaptive_rdstar) against planted laws: the
linearised design's Jacobian against the law's own terms, its scores against brute force, the
"not identified" path, the stop logic, and (slow) the loop on a planted multi-size study."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.adaptive import AcquisitionConfig, Action
from analysis.adaptive_loop import AdaptiveConfig, run_adaptive
from analysis.adaptive_rdstar import (
    MIN_GAIN,
    RD_KIND,
    RdStarState,
    batch_target,
    candidate_actions,
    crossover_expected,
    log_loss_jacobian,
    predicted_log_width,
    rd_star_actions,
    rd_star_state,
    run_design,
    with_rd_star,
)
from analysis.adaptive_rdstar_sim import PlantedSizes, seed_runs
from analysis.adaptive_sim import PlantedStudy, SimulatedSweep
from analysis.errors import AnalysisError
from analysis.fits import IDENTIFIED, theta_of
from analysis.laws import MUENNIGHOFF_2023, log_terms

STUDY = PlantedSizes()
LAW = MUENNIGHOFF_2023


def _planted_state(observed: pd.DataFrame, log_width: float = 0.5) -> RdStarState:
    """The state a fit would give if it landed on the truth (no fit: fast)."""
    pts = observed[observed["objective"] == "ar"]
    design = tuple(
        zip(pts["n_params"], pts["epoch"] * pts["unique_tokens"], pts["unique_tokens"], strict=True)
    )
    rd = LAW.rd_star
    lo, hi = rd * math.exp(-log_width / 2), rd * math.exp(log_width / 2)
    return RdStarState("ar", IDENTIFIED, rd, lo, hi, tuple(theta_of(LAW)), 0.005, design)


def _seeded(seed: int = 0) -> pd.DataFrame:
    return STUDY.draw(seed_runs(STUDY, 4), np.random.default_rng(seed))


def test_config_names_the_bad_rd_star_width() -> None:
    with pytest.raises(AnalysisError, match="rd_star_width"):
        AdaptiveConfig(target_width=0.5, rd_star_width=0.0)
    assert AdaptiveConfig(target_width=0.5).rd_star_width is None  # off by default


def test_jacobian_matches_the_law_terms() -> None:
    """d log L / d(log A, log B, log E) are the three terms' shares of L (a closed form); the
    log R_D* column is 0 within the first epoch (every token fresh: D' = D) and positive
    beyond it (a larger R_D* keeps repeats worth more). N = 2e7 < N_opt(1e9) ~ 5e7, so N' = N
    (above N_opt, N' moves with A and B through N_opt and the shares are not the whole story)."""
    runs = np.array([[2e7, 1e9, 1e9], [2e7, 8e9, 1e9], [2e7, 6.4e10, 1e9]])
    jac = log_loss_jacobian(theta_of(LAW), runs)
    terms = np.exp(log_terms(runs[:, 0], runs[:, 1], runs[:, 2], LAW))
    np.testing.assert_allclose(jac[:, :3], (terms / terms.sum(axis=0)).T, rtol=1e-5)
    rd = jac[:, 5]
    assert abs(rd[0]) < 1e-9 and rd[1] < 0 and rd[2] < rd[1]  # loss falls as R_D* grows


def test_runs_beyond_one_epoch_narrow_rd_star_and_first_epoch_runs_barely_do() -> None:
    state = _planted_state(_seeded())
    w_first = predicted_log_width(state, np.array([[2.5e7, 1e8, 1e8]] * 3))
    w_deep = predicted_log_width(state, np.array([[2.5e7, 6.4e9, 1e8]] * 3))
    assert w_deep < 0.9 * state.log_width  # 64 epochs: strongly informative
    assert w_deep < w_first <= state.log_width


def test_the_first_pick_is_the_best_score_by_brute_force() -> None:
    """The greedy first pick maximises predicted log-width drop per FLOP over every option
    predicted to cut at least MIN_GAIN of the width, each scored with ``predicted_log_width``."""
    seen = _seeded()
    state = _planted_state(seen)
    pool, done = STUDY.pool(), set(seen["run_id"])
    acq = AcquisitionConfig(per_group=1)
    picked = rd_star_actions(state, seen, pool, done, acq)
    assert len(picked) == 1 and picked[0].kind == RD_KIND and "R_D* (ar)" in picked[0].why
    measured = {("ar", r.model_name, r.unique_tokens, r.epoch) for r in seen.itertuples()}
    sizes = {m: float(n) for m, n in seen.groupby("model_name")["n_params"].first().items()}
    gains = [
        (state.log_width - predicted_log_width(state, run_design(list(runs), sizes)), runs)
        for _, runs in candidate_actions("ar", pool, done, measured, acq.min_seeds)
    ]
    useful = [(g, runs) for g, runs in gains if g > MIN_GAIN * state.log_width]
    best = max(useful, key=lambda o: o[0] / sum(r.flops for r in o[1]))
    assert {r.key for r in picked[0].runs} == {r.key for r in best[1]}
    assert all(r.objective == "ar" and r.key not in done for r in picked[0].runs)


def test_one_model_size_is_not_identified_and_not_scored() -> None:
    one = PlantedStudy()
    seen = one.draw(one.grid()[:18], np.random.default_rng(0))
    state = rd_star_state(seen, "ar")
    assert not state.identified and "model size" in state.status
    assert state.describe().startswith("ar: not identified") and math.isinf(state.rel_width)
    assert rd_star_actions(state, seen, one.pool(), set(), AcquisitionConfig()) == []
    states = {"ar": state}
    cfg = AdaptiveConfig(target_width=0.5, rd_star_width=0.1)
    reason, acts = with_rd_star("target reached: x", [], states, seen, one.pool(), set(), cfg, 0)
    assert acts == [] and reason.startswith("target reached") and "not targeted" in reason


def test_rd_star_keeps_the_sweep_going_after_the_crossover_target_until_the_cap() -> None:
    seen = _seeded()
    state = _planted_state(seen, log_width=0.8)
    states, pool = {"ar": state}, STUDY.pool()
    done, spent = set(seen["run_id"]), 1e20
    wide = AdaptiveConfig(target_width=0.5, rd_star_width=0.1)
    reason, acts = with_rd_star("target reached: x", [], states, seen, pool, done, wide, spent)
    assert reason == "" and acts and all(a.kind == RD_KIND for a in acts)
    assert batch_target(acts) == RD_KIND
    capped = AdaptiveConfig(target_width=0.5, rd_star_width=0.1, compute_cap=spent)
    reason, acts = with_rd_star("target reached: x", [], states, seen, pool, done, capped, spent)
    assert acts == [] and "R_D* still wider than 0.1" in reason
    # Met (width 0.8 -> hi/lo - 1 = 1.23 <= 2): the crossover's reason stands, with a note.
    met = AdaptiveConfig(target_width=0.5, rd_star_width=2.0)
    reason, acts = with_rd_star("target reached: x", [], states, seen, pool, done, met, spent)
    assert acts == [] and "ar hi/lo - 1 = 1.23 <= 2" in reason
    cap = "compute cap: the next batch would pass"
    assert with_rd_star(cap, [], states, seen, pool, done, wide, spent) == (cap, [])


def test_rd_star_runs_are_scored_given_the_crossovers_batch() -> None:
    seen = _seeded()
    state, pool, acq = _planted_state(seen, 0.8), STUDY.pool(), AcquisitionConfig(per_group=1)
    done = set(seen["run_id"])
    alone = rd_star_actions(state, seen, pool, done, acq)[0]
    crossover = Action(alone.group, "new_setting", alone.runs, 0.1, "crossover")
    cfg = AdaptiveConfig(target_width=0.5, rd_star_width=0.1, acquisition=acq)
    _, acts = with_rd_star("", [crossover], {"ar": state}, seen, pool, done, cfg, 0.0)
    assert acts[0] is crossover and len(acts) == 2
    assert not {r.key for r in acts[1].runs} & {r.key for r in alone.runs}
    assert acts[1].expected_reduction < alone.expected_reduction  # diminishing returns
    assert batch_target(acts) == "crossover+rd_star"
    assert crossover_expected(acts) == 0.1  # R_D* drops are of another interval


def test_fitted_state_is_identified_and_covers_the_planted_rd_star() -> None:
    """One real law fit (~3-10 s) on the seed design of 4 epoch levels, 3 sizes, 2 budgets."""
    state = rd_star_state(_seeded(1), "ar")
    assert state.identified, state.status
    assert state.lo <= LAW.rd_star <= state.hi
    assert 0.5 < state.sigma / 0.005 < 2.0  # the planted log-noise, recovered


@pytest.mark.slow
def test_loop_targets_rd_star_logs_it_and_stops_on_it() -> None:
    """The whole loop on the planted multi-size study (~2-4 min loaded): the crossover target
    is loose (met after the seed design), R_D* drives every acquired batch until the cap, each
    acquired step names its target, and the final AR interval is narrower than the seed
    design's and covers the truth."""
    rng = np.random.default_rng(3)
    seen: list[pd.DataFrame] = []

    def run(batch: list) -> None:
        seen.append(STUDY.draw(batch, rng))

    cap = sum(c.flops for c in seed_runs(STUDY, 4)) + 1.5e19
    cfg = AdaptiveConfig(target_width=math.inf, seed_epochs=4, rd_star_width=0.3, compute_cap=cap)
    result = run_adaptive(STUDY.pool(), run, lambda: pd.concat(seen, ignore_index=True), cfg)
    acquired = [s for s in result.steps if s.kind == "acquire"]
    assert acquired and all(s.target == "rd_star" for s in acquired)
    assert all(s.why.count("R_D* (") >= 1 for s in acquired)
    assert result.steps[0].rd_star.startswith("ar: ") and "R_D*" in result.stop_reason
    assert result.compute_spent <= cap
    first = rd_star_state(seen[0], "ar")
    final = rd_star_state(pd.concat(seen, ignore_index=True), "ar")
    assert final.log_width < first.log_width and final.lo <= LAW.rd_star <= final.hi


def test_one_size_loop_is_unchanged_by_the_rd_star_target() -> None:
    """One model size (as in adaptive-demo): R_D* is not identified, so the target changes no
    decision; the step log says why instead of a number."""
    one = PlantedStudy()
    runs = {}
    for width in (None, 0.1):
        sweep = SimulatedSweep(one, np.random.default_rng(0))
        cfg = AdaptiveConfig(
            target_width=0.05,
            compute_cap=0.15 * one.grid_flops(),
            rd_star_width=width,
            n_boot=50,  # fewer draws than the report's: the decisions, not the widths, compared
            acquisition=AcquisitionConfig(n_boot=20),
        )
        result = run_adaptive(one.pool(), sweep.run, sweep.observe, cfg)
        runs[width] = [(s.kind, s.run_ids) for s in result.steps]
        notes = [s.rd_star for s in result.steps if s.kind != "stop"]
    assert runs[None] == runs[0.1] and len(runs[None]) >= 3
    assert all("not identified" in n and "model size" in n for n in notes)
