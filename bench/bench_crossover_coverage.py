"""Coverage of the crossover interval (``analysis.crossover.locate_crossover``) on planted laws.

Each repetition draws one full grid of final losses from ``analysis.adaptive_sim.PlantedStudy``
(Muennighoff et al.'s AR law vs ``analysis.synthetic.DLM_EXAMPLE`` at N = 1e8, 0.5% log-normal
seed noise, 0.1% evaluation noise), locates the crossover with its 95% bootstrap interval and
checks it against the laws' crossover. Per design it prints: coverage with a Clopper-Pearson
95% interval over the repetitions whose interval is identified (the others are counted as
"not identified": no interval, no claim), misses below/above, the point estimate's bias in
log-epoch (mean over draws, and on noiseless data), the empirical SD of log(point estimate)
across draws vs the bootstrap's own SD (median over draws, from the draws' 16/84% quantiles),
and the median relative width hi/lo - 1.

    nice python bench/bench_crossover_coverage.py --reps 200 [--design grid8-1e9 ...]
        [--seed-draws resampled]   # the earlier >= 2-seed method, for the before/after
        [--shared-seed 0.5]        # half the seed variance shared by a seed's runs

Seeded: repetition r draws data with seed r and bootstraps with seed r (the shared seed effect
with seed 10**6 + r).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import analysis.crossover_draws as crossover_draws
from analysis.adaptive_sim import PlantedStudy
from analysis.binomial import clopper_pearson
from analysis.crossover import (
    _crossing,
    _dlm_minus_ar,
    _fit_pair,
    _interval_all_draws,
    bootstrap_crossings,
    locate_crossover,
    noise_models,
)

GRID8 = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
TEST5 = (8.0, 16.0, 32.0, 64.0, 128.0)
# The demo's evaluation epochs (cooldown branches and the final model, 26,620 unique tokens), as
# separate one-seed runs: 9 settings, 5 df about the cubic; at N = 1e7 the truth (30.6) lies
# between 26.4 and 52.8, as the demo's crossover lies inside its points.
DEMO = (2.24, 4.41, 8.81, 13.3, 17.6, 22.0, 26.4, 52.8, 75.1)
DESIGNS = {
    "grid8-1e9": (GRID8, 3, 1_000_000_000),
    "grid8-1e8": (GRID8, 3, 100_000_000),
    "test5-1e9": (TEST5, 3, 1_000_000_000),
    "grid8-1e9-1seed": (GRID8, 1, 1_000_000_000),
    "grid8-1e9-5seeds": (GRID8, 5, 1_000_000_000),
    "grid8-1e8-1seed": (GRID8, 1, 100_000_000),
    "grid7-1e9-1seed": (GRID8[:7], 1, 1_000_000_000),  # 4..256: 3 df about the cubic
    "grid6-1e9-1seed": (GRID8[1:7], 1, 1_000_000_000),  # 8..256: 2 df, not identified
    "demo-1e9-1seed": (DEMO, 1, 1_000_000_000, 1e7),  # N = 1e7: truth 30.6
    # Curve mode: the 8 points along ONE run per objective (the demo's shape), sharing that
    # run's seed effect; evaluation noise per point.
    "curve8-1e9-1run": (GRID8, 1, 1_000_000_000),
}


def _one(points, seed: int, n_boot: int) -> tuple[float, float, float, float]:
    """(point estimate, lo, hi, bootstrap SD of log crossing) as ``locate_crossover`` computes
    them (one bootstrap, its steps spelled out so the draws can be read); lo = hi = NaN when
    the interval is not identified."""
    ar, dlm = _fit_pair(points, points["y"].to_numpy(float))
    lo = max(ar.epoch_range[0], dlm.epoch_range[0])
    hi = min(ar.epoch_range[1], dlm.epoch_range[1])
    grid = np.geomspace(lo, hi, 400)
    _, epoch = _crossing(grid, _dlm_minus_ar(ar, dlm, grid, "val_loss"))
    means, _ = noise_models(points)
    if not all(m.spread.identified for m in means.values()):
        return epoch, math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boots = bootstrap_crossings(means, "val_loss", (ar, dlm), grid, n_boot, rng)
    e_lo, e_hi = _interval_all_draws(boots, lo, hi)
    where = {"no_crossover": math.inf, "dlm_ahead_throughout": 0.0}
    vals = np.array([e if s == "crossover" else where[s] for s, e in boots])
    with np.errstate(divide="ignore"):
        q16, q84 = np.percentile(np.log(vals), [16, 84])  # NaN when a quantile is open
    return epoch, e_lo, e_hi, float((q84 - q16) / 2)


def _shared_seed_effect(points, share: float, noise: float, rng: np.random.Generator):
    """Runs of one (objective, seed) at every setting share ``share`` of the seed variance
    (one initialisation): a common log-normal factor per (objective, seed)."""
    if share <= 0:
        return points
    keys = points["objective"] + "/" + points["seed"].astype(str)
    codes, uniq = keys.factorize()
    effect = math.sqrt(share) * noise * rng.standard_normal(len(uniq))
    return points.assign(y=points["y"] * np.exp(effect[codes]))


def run_design(name: str, reps: int, n_boot: int, shared: float = 0.0) -> dict[str, float]:
    epochs, n_seeds, u, *rest = DESIGNS[name]
    n_params = rest[0] if rest else PlantedStudy.n_params
    seed_noise = PlantedStudy.seed_noise
    curve = name.startswith("curve")
    shared = 1.0 if curve else shared  # one run: its whole seed effect is shared by its points
    study = PlantedStudy(
        n_params=n_params,
        unique_tokens=(u,),
        epochs=epochs,
        seeds=tuple(range(n_seeds)),
        seed_noise=seed_noise * math.sqrt(1.0 - shared),
    )
    truth = study.truth(u)
    clean = PlantedStudy(
        n_params=n_params,
        unique_tokens=(u,),
        epochs=epochs,
        seeds=(0,),
        seed_noise=0.0,
        eval_noise=0.0,
    )
    pts = clean.draw(clean.grid(), np.random.default_rng(0)).assign(se=lambda f: 1e-4 * f["y"])
    noiseless = locate_crossover(pts, "val_loss", n_boot=0)["epoch"]
    est, below, above, widths, boot_sd, unknown = [], 0, 0, [], [], 0
    t0 = time.perf_counter()
    for r in range(reps):
        points = study.draw(study.grid(), np.random.default_rng(r)).reset_index(drop=True)
        points = _shared_seed_effect(points, shared, seed_noise, np.random.default_rng(10**6 + r))
        if curve:  # one run per (objective, seed): its points are evaluations along it
            points = points.assign(run_id=points["objective"] + "-" + points["seed"].astype(str))
        epoch, e_lo, e_hi, sd = _one(points, r, n_boot)
        est.append(epoch)
        if math.isnan(e_lo):  # not identified: no interval, no claim to score
            unknown += 1
            continue
        below += truth < e_lo
        above += truth > e_hi
        widths.append(e_hi / e_lo - 1)
        boot_sd.append(sd)
        if (r + 1) % 50 == 0:
            print(f"  {name}: {r + 1}/{reps} done, {below + above} misses", flush=True)
    log_est = np.log(np.array(est, float))
    ok = np.isfinite(log_est)
    scored = reps - unknown
    hits = scored - below - above
    cp = clopper_pearson(hits, scored) if scored else (math.nan, math.nan)
    out = {
        "truth": truth,
        "not_identified": unknown,
        "coverage": hits / scored if scored else math.nan,
        "cp_lo": cp[0],
        "cp_hi": cp[1],
        "miss_below": below,
        "miss_above": above,
        "noiseless_bias_pct": 100 * (noiseless / truth - 1),
        "mean_log_bias": float(np.mean(log_est[ok]) - math.log(truth)),
        "emp_sd_log": float(np.std(log_est[ok], ddof=1)),
        "boot_sd_log": float(np.median(boot_sd)) if boot_sd else math.nan,
        # How much the bootstrap's SD varies from draw to draw (its own noise): an interval
        # whose spread comes from few df is too narrow in some draws, which then miss.
        "boot_sd_cv": float(np.std(boot_sd) / np.mean(boot_sd)) if boot_sd else math.nan,
        "median_width": float(np.median(widths)) if widths else math.nan,
        "no_point": int((~ok).sum()),
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"{name:18s} truth {truth:6.1f}  coverage {hits}/{scored} = {out['coverage']:.3f} "
        f"(CP {cp[0]:.3f}-{cp[1]:.3f}; misses below {below}, above {above}; not identified "
        f"{unknown})  noiseless bias {out['noiseless_bias_pct']:+.2f}%  mean log bias "
        f"{out['mean_log_bias']:+.4f}  SD log: empirical {out['emp_sd_log']:.4f} vs "
        f"bootstrap {out['boot_sd_log']:.4f} (CV over draws {out['boot_sd_cv']:.2f})  "
        f"median width {out['median_width']:.3f}  "
        f"no point {out['no_point']}  ({out['seconds']:.0f} s)",
        flush=True,
    )
    return out


def _use_resampled_seeds() -> None:
    """The earlier final-mode draws for designs with >= 2 seeds at every setting: whole seeds
    resampled (``resampled_seeds``) instead of the pooled spread. One-seed designs: unchanged."""
    pooled = crossover_draws.final_spread

    def final_spread(vals, mean, epochs):
        spread = pooled(vals, mean, epochs)
        if np.isfinite(vals).sum(axis=0).min() >= 2:
            return crossover_draws.Spread("resampled", "seeds resampled (earlier method)")
        return spread

    crossover_draws.final_spread = final_spread


def print_study(db: str) -> None:
    """What the terminal would print for a study with this code (the store's settings)."""
    import duckdb

    from analysis.crossover import crossovers
    from analysis.crossover_store import BOOT_SEED, EVALS_SQL, N_BOOT
    from analysis.summary import format_summary

    with duckdb.connect(db, read_only=True) as con:
        evals = con.execute(EVALS_SQL).df()
    table = crossovers(evals, n_boot=N_BOOT, seed=BOOT_SEED).assign(n_boot=N_BOOT)
    print(f"{db}:\n{format_summary(table)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--design", action="append", choices=sorted(DESIGNS))
    ap.add_argument(
        "--seed-draws",
        choices=("pooled", "resampled"),
        default="pooled",
        help="final-mode seed draws: pooled spread with t draws (the method), or the earlier "
        "whole-seed resampling (for the before/after comparison)",
    )
    ap.add_argument(
        "--shared-seed",
        type=float,
        default=0.0,
        help="share of the seed variance common to one seed's runs at every setting (one "
        "initialisation; 0: every run independent, as PlantedStudy draws)",
    )
    ap.add_argument(
        "--db",
        action="append",
        help="instead: print the crossover table this code computes from a study's DuckDB "
        "evaluations (opened read-only; its stored table is left as it is)",
    )
    args = ap.parse_args()
    if args.db:
        for db in args.db:
            print_study(db)
        return
    if not 0.0 <= args.shared_seed < 1.0:
        ap.error("--shared-seed: a share in [0, 1)")
    if args.seed_draws == "resampled":
        _use_resampled_seeds()
    print(
        f"seed draws: {args.seed_draws}; shared seed share {args.shared_seed}; {args.reps} reps, "
        f"{args.n_boot} draws",
        flush=True,
    )
    for name in args.design or list(DESIGNS):
        run_design(name, args.reps, args.n_boot, args.shared_seed)


if __name__ == "__main__":
    main()
