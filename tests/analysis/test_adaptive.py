"""The adaptive sweep's acquisition and loop against planted truth (analysis.adaptive_sim):
the policy is what is under test, so "dispatch" draws final losses from known laws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.adaptive import AcquisitionConfig, Interval, interval_of, relative_width
from analysis.adaptive_actions import coarse_gap, extend_action, propose
from analysis.adaptive_loop import AdaptiveConfig, describe_rd_star, seed_design
from analysis.adaptive_sim import PlantedStudy, SimulatedSweep, adaptive, grid_widths
from analysis.errors import AnalysisError

# N 1e8, U 1e9: the truth crosses at ~51 epochs. Comparator: epochs 4..512 x 3 seeds;
# pool: 8 seeds and half-octave settings.
STUDY = PlantedStudy()


def test_relative_width_is_open_when_an_edge_is() -> None:
    assert relative_width(40.0, 60.0) == pytest.approx(0.5)
    assert math.isinf(relative_width(40.0, math.inf)) and math.isinf(relative_width(0.0, 9.0))
    assert math.isinf(relative_width(math.nan, 9.0))


def test_config_names_the_bad_field() -> None:
    with pytest.raises(AnalysisError, match="target_width"):
        AdaptiveConfig(target_width=0.0)
    with pytest.raises(AnalysisError, match="compute_cap"):
        AdaptiveConfig(target_width=0.5, compute_cap=-1.0)
    with pytest.raises(AnalysisError, match="confirm_steps"):
        AdaptiveConfig(target_width=0.5, confirm_steps=-1)


def test_pool_holds_the_grid_and_more_seeds_and_settings() -> None:
    grid, pool = STUDY.grid(), STUDY.pool()
    assert len(grid) == 8 * 3 * 2
    assert {c.key for c in grid} < {c.key for c in pool}
    assert len({c.epochs for c in pool}) == 15 and {c.seed for c in pool} == set(range(8))
    assert STUDY.grid_flops() == pytest.approx(sum(c.flops for c in grid))


def test_seed_design_is_the_cheapest_octaves_with_three_seeds() -> None:
    # The pool's 4, 5.66, 8, 11.3, 16: settings at least 1.45x apart, so 4, 8, 16.
    chosen = seed_design(STUDY.pool(), AdaptiveConfig(target_width=0.5))
    assert {c.epochs for c in chosen} == {4.0, 8.0, 16.0}
    assert len(chosen) == 2 * 3 * 3 and {c.seed for c in chosen} == {0, 1, 2}


def _seeded() -> tuple[list, pd.DataFrame]:
    cands = STUDY.pool()
    sweep = SimulatedSweep(STUDY, np.random.default_rng(0))
    sweep.run(seed_design(cands, AdaptiveConfig(target_width=0.5)))
    return cands, sweep.observe()


def test_open_interval_extends_both_objectives_above_the_range() -> None:
    cands, seen = _seeded()
    open_top = Interval("no_crossover", math.nan, math.inf, math.inf, 0.0, 16.0)
    done = set(seen["run_id"])
    near = extend_action(open_top, seen, cands, done, 3, ratio=2.0)
    far = extend_action(open_top, seen, cands, done, 3, ratio=4.0)
    assert near is not None and near.kind == "extend" and len(near.runs) == 6
    assert {(r.objective, r.epochs) for r in near.runs} == {("ar", 32.0), ("dlm", 32.0)}
    assert far is not None and {r.epochs for r in far.runs} == {64.0}
    closed = Interval("crossover", 50.0, 40.0, 60.0, 1.0, 64.0)
    assert extend_action(closed, seen, cands, set(), 3) is None


def test_an_interval_read_across_a_coarse_gap_is_filled_first() -> None:
    """Settings 4, 8, 16, 64 around an interval [40, 60]: 16 -> 64 is 4x, so 32 is measured
    before any width counts; with 32 measured the bracket is an octave and nothing is due."""
    cands, seen = _seeded()
    rng = np.random.default_rng(1)

    def at(epochs: float) -> pd.DataFrame:  # both objectives, 3 seeds
        return STUDY.draw([c for c in cands if c.epochs == epochs and c.seed < 3], rng)

    pool = sorted({c.epochs for c in cands})
    iv = Interval("crossover", 50.0, 40.0, 60.0, 1.0, 64.0)
    with64 = pd.concat([seen, at(64.0)], ignore_index=True)
    assert coarse_gap(with64, iv, pool, 2.0) == 32.0
    assert coarse_gap(pd.concat([with64, at(32.0)], ignore_index=True), iv, pool, 2.0) is None
    assert coarse_gap(with64, iv, pool, 4.0) is None  # a 4x gap allowed


def test_rd_star_with_one_model_size_is_not_identified() -> None:
    """One model size (as the planted study and the CPU demo): the step log says so and
    prints no number for R_D*."""
    cands, seen = _seeded()
    text = describe_rd_star(seen)
    assert "ar: not identified" in text and "dlm: not identified" in text
    assert "model size" in text


def test_adaptive_matches_the_grid_width_with_half_the_compute_and_covers_truth() -> None:
    """The comparator's width is its median over independent draws (one draw's width varies
    several-fold); three seeded repetitions of the adaptive sweep on the pool, each capped at
    half the grid's compute, must reach it, and at least 2 of the 3 intervals must cover the
    planted crossover: a calibrated 95% interval misses at least once in 3 draws 14% of the
    time, twice only 0.7%. Deterministic seeds: bench/bench_adaptive.py measures the rates over
    many repetitions."""
    truth = STUDY.truth(STUDY.unique_tokens[0])
    target = float(np.median(grid_widths(STUDY, AdaptiveConfig(target_width=1.0), range(20))))
    cap = 0.5 * STUDY.grid_flops()
    covered = 0
    for rep in range(3):
        result = adaptive(STUDY, AdaptiveConfig(target_width=target, compute_cap=cap), rep)
        iv = next(iter(result.intervals.values()))
        assert result.steps[-1].kind == "stop" and result.stop_reason.startswith("target")
        assert result.compute_spent <= cap
        assert iv.rel_width <= target
        # A miss is a near miss, not an interval far from the truth.
        assert 0.9 * iv.lo <= truth <= 1.1 * iv.hi
        covered += iv.lo <= truth <= iv.hi
    assert covered >= 2


def test_interval_descriptions_say_what_the_draws_did() -> None:
    inf = math.inf
    never = Interval("no_crossover", math.nan, inf, inf, 0.0, 12.0)
    assert never.describe() == "not crossed by 12 epochs P=0.00"
    assert math.isinf(never.rel_width)
    some = Interval("crossover", 10.0, 8.0, inf, 0.6, 12.0)
    assert some.describe() == "10 [8, beyond 12] P=0.60"
    closed = Interval("crossover", 19.2, 18.6, 19.5, 1.0, 32.0)
    assert closed.describe() == "19.2 [18.6, 19.5] P=1.00"
    # One seed on too few settings: locate_crossover gives NaN bounds and no P(crossover).
    unpinned = Interval("crossover", 19.2, math.nan, math.nan, math.nan, 32.0)
    assert unpinned.describe() == "19.2, 95% interval not identified"


# U 1e8: the truth crosses at ~181 epochs, between the grid's two costliest settings below 512.
STUDY_1E8 = PlantedStudy(unique_tokens=(100_000_000,))


def _measured(study: PlantedStudy, extra: dict[float, int], seed: int) -> tuple[list, pd.DataFrame]:
    """The seed design plus ``extra`` settings (epochs -> seeds per objective), drawn."""
    cands = study.pool()
    sweep = SimulatedSweep(study, np.random.default_rng(seed))
    sweep.run(seed_design(cands, AdaptiveConfig(target_width=0.5)))
    sweep.run([c for c in cands if c.epochs in extra and c.seed < extra[c.epochs]])
    return cands, sweep.observe()


def test_acquisition_config_names_the_bad_field() -> None:
    with pytest.raises(AnalysisError, match="new_seeds"):
        AcquisitionConfig(new_seeds=0)
    assert AcquisitionConfig(min_seeds=3, new_seeds=2).entry_seeds == 2
    assert AcquisitionConfig(min_seeds=1, new_seeds=2).entry_seeds == 1


def test_settings_after_the_seed_design_enter_with_two_seeds() -> None:
    """The seed design's cheap settings carry the pooled spread (3 seeds each); a setting
    measured later enters with 2 per objective, the fewest the final-loss interval pools."""
    cands, seen = _seeded()
    open_top = Interval("no_crossover", math.nan, math.inf, math.inf, 0.0, 16.0)
    (action,) = propose(seen, open_top, cands, set(seen["run_id"]), AcquisitionConfig())
    assert action.kind == "extend" and len(action.runs) == 4
    assert {(r.objective, r.seed) for r in action.runs} == {
        (o, s) for o in ("ar", "dlm") for s in (0, 1)
    }


def test_an_extension_past_the_budget_gives_way_to_what_fits() -> None:
    """U = 1e8 measured at 4..16, 64 and 256: the interval is open above 256 in this draw and
    the rule's next step (512, ~1/3 of the grid's compute at 2 seeds) passes the budget. The
    sweep does not stop there: the 64 -> 256 gap in the range is filled first (128), and with
    too little left for that, one near action that fits goes; with nothing near affordable,
    none (a far setting is no substitute)."""
    cands, seen = _measured(STUDY_1E8, {64.0: 2, 256.0: 2}, seed=0)
    iv = interval_of(seen, n_boot=200, seed=0)
    assert math.isinf(iv.hi) and iv.p_crossover > 0.5, iv.describe()
    done, cfg = set(seen["run_id"]), AcquisitionConfig()
    per_run = {e: 6.0 * STUDY_1E8.n_params * 1e8 * e for e in (128.0, 256.0, 512.0)}
    (ext,) = propose(seen, iv, cands, done, cfg)
    assert ext.kind == "extend" and {r.epochs for r in ext.runs} == {512.0}
    budget = 0.9 * 4 * per_run[512.0]
    (fill,) = propose(seen, iv, cands, done, cfg, budget)
    assert fill.kind == "fill" and {r.epochs for r in fill.runs} == {128.0}
    assert "passes the" in fill.why
    # 2.5 runs at 128: one objective's 128 (2 seeds) or one more seed at 256 fit, 181 not.
    (one,) = propose(seen, iv, cands, done, cfg, 2.5 * per_run[128.0])
    assert one.kind in ("new_setting", "replicate") and one.flops <= 2.5 * per_run[128.0]
    assert {r.epochs for r in one.runs} <= {128.0, 256.0}
    assert propose(seen, iv, cands, done, cfg, 1.5 * per_run[128.0]) == []


def test_at_u1e8_the_sweep_spends_its_cap_near_the_crossover_and_covers() -> None:
    """U = 1e8 (truth ~181 epochs, between the grid's 128 and 256): "the grid's width with half
    its compute" is reached in about half the repetitions only (bench/RESULTS.md says why), so
    this checks what the policy does guarantee, on seeded repetitions 0 and 1 (the first two
    of the bench, one of each outcome): it never passes the cap, it stops either at the target
    or having spent what it could (not with an open interval and most of the cap unspent, as
    before), and its interval holds the truth."""
    truth = STUDY_1E8.truth(STUDY_1E8.unique_tokens[0])
    widths = grid_widths(STUDY_1E8, AdaptiveConfig(target_width=1.0), range(20))
    cfg = AdaptiveConfig(
        target_width=float(np.median(widths)), compute_cap=0.5 * STUDY_1E8.grid_flops()
    )
    stops = []
    for rep in (0, 1):
        result = adaptive(STUDY_1E8, cfg, rep)
        iv = next(iter(result.intervals.values()))
        assert result.compute_spent <= cfg.compute_cap
        stops.append(result.stop_reason.split(":")[0])
        if stops[-1] == "compute cap":  # less than one more 128-epoch pair was left
            assert result.compute_spent > 0.45 * STUDY_1E8.grid_flops()
        else:
            assert stops[-1] == "target reached" and iv.rel_width <= cfg.target_width
        assert iv.lo <= truth <= iv.hi, iv.describe()
    assert "target reached" in stops
