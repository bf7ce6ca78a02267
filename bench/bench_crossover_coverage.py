"""Coverage of the crossover interval (``analysis.crossover.locate_crossover``) on planted laws.

Each repetition draws one full grid of final losses from ``analysis.adaptive_sim.PlantedStudy``
(Muennighoff et al.'s AR law vs ``analysis.synthetic.DLM_EXAMPLE`` at N = 1e8, 0.5% log-normal
seed noise, 0.1% evaluation noise), locates the crossover with its 95% bootstrap interval and
checks it against the laws' crossover. Per design it prints: coverage with a Clopper-Pearson
95% interval, misses below/above, the point estimate's bias in log-epoch (mean over draws, and
on noiseless data), the empirical SD of log(point estimate) across draws vs the bootstrap's own
SD (mean over draws, from the draws' 16/84% quantiles), and the median relative width hi/lo - 1.

    nice python bench/bench_crossover_coverage.py --reps 200 [--design grid8-1e9 ...]
        [--seed-draws resampled]   # the earlier method, for the before/after comparison

Seeded: repetition r draws data with seed r and bootstraps with seed r.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import beta

import analysis.crossover as crossover
from analysis.adaptive_sim import PlantedStudy
from analysis.crossover import (
    _crossing,
    _dlm_minus_ar,
    _fit_pair,
    _interval_all_draws,
    _residual_se,
    bootstrap_crossings,
    locate_crossover,
)

GRID8 = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
TEST5 = (8.0, 16.0, 32.0, 64.0, 128.0)
DESIGNS = {
    "grid8-1e9": (GRID8, 3, 1_000_000_000),
    "grid8-1e8": (GRID8, 3, 100_000_000),
    "test5-1e9": (TEST5, 3, 1_000_000_000),
    "grid8-1e9-1seed": (GRID8, 1, 1_000_000_000),
    "grid8-1e9-5seeds": (GRID8, 5, 1_000_000_000),
}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    lo = beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
    hi = beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


def _one(points, seed: int, n_boot: int) -> tuple[float, float, float, float]:
    """(point estimate, lo, hi, bootstrap SD of log crossing) as ``locate_crossover`` computes
    them (one bootstrap, its steps spelled out so the draws can be read)."""
    ar, dlm = _fit_pair(points, points["y"].to_numpy(float))
    lo = max(ar.epoch_range[0], dlm.epoch_range[0])
    hi = min(ar.epoch_range[1], dlm.epoch_range[1])
    grid = np.geomspace(lo, hi, 400)
    _, epoch = _crossing(grid, _dlm_minus_ar(ar, dlm, grid, "val_loss"))
    se = _residual_se(points, ar, dlm)
    rng = np.random.default_rng(seed)
    boots, _ = bootstrap_crossings(points, "val_loss", (ar, dlm), grid, se, n_boot, rng)
    e_lo, e_hi = _interval_all_draws(boots, lo, hi)
    where = {"no_crossover": math.inf, "dlm_ahead_throughout": 0.0}
    vals = np.array([e if s == "crossover" else where[s] for s, e in boots])
    q16, q84 = np.percentile(np.log(vals), [16, 84])
    return epoch, e_lo, e_hi, float((q84 - q16) / 2)


def run_design(name: str, reps: int, n_boot: int) -> dict[str, float]:
    epochs, n_seeds, u = DESIGNS[name]
    study = PlantedStudy(unique_tokens=(u,), epochs=epochs, seeds=tuple(range(n_seeds)))
    truth = study.truth(u)
    clean = PlantedStudy(
        unique_tokens=(u,), epochs=epochs, seeds=(0,), seed_noise=0.0, eval_noise=0.0
    )
    pts = clean.draw(clean.grid(), np.random.default_rng(0)).assign(se=lambda f: 1e-4 * f["y"])
    noiseless = locate_crossover(pts, "val_loss", n_boot=0)["epoch"]
    est, below, above, widths, boot_sd = [], 0, 0, [], []
    t0 = time.perf_counter()
    for r in range(reps):
        points = study.draw(study.grid(), np.random.default_rng(r)).reset_index(drop=True)
        epoch, e_lo, e_hi, sd = _one(points, r, n_boot)
        est.append(epoch)
        below += truth < e_lo
        above += truth > e_hi
        widths.append(e_hi / e_lo - 1)
        boot_sd.append(sd)
        if (r + 1) % 50 == 0:
            print(f"  {name}: {r + 1}/{reps} done, {below + above} misses", flush=True)
    log_est = np.log(np.array(est, float))
    ok = np.isfinite(log_est)
    hits = reps - below - above
    cp = clopper_pearson(hits, reps)
    out = {
        "truth": truth,
        "coverage": hits / reps,
        "cp_lo": cp[0],
        "cp_hi": cp[1],
        "miss_below": below,
        "miss_above": above,
        "noiseless_bias_pct": 100 * (noiseless / truth - 1),
        "mean_log_bias": float(np.mean(log_est[ok]) - math.log(truth)),
        "emp_sd_log": float(np.std(log_est[ok], ddof=1)),
        "boot_sd_log": float(np.median(boot_sd)),
        # How much the bootstrap's SD varies from draw to draw (its own noise): an interval
        # whose spread comes from few df is too narrow in some draws, which then miss.
        "boot_sd_cv": float(np.std(boot_sd) / np.mean(boot_sd)),
        "median_width": float(np.median(widths)),
        "no_point": int((~ok).sum()),
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"{name:18s} truth {truth:6.1f}  coverage {hits}/{reps} = {hits / reps:.3f} "
        f"(CP {cp[0]:.3f}-{cp[1]:.3f}; misses below {below}, above {above})  "
        f"noiseless bias {out['noiseless_bias_pct']:+.2f}%  mean log bias "
        f"{out['mean_log_bias']:+.4f}  SD log: empirical {out['emp_sd_log']:.4f} vs "
        f"bootstrap {out['boot_sd_log']:.4f} (CV over draws {out['boot_sd_cv']:.2f})  "
        f"median width {out['median_width']:.3f}  "
        f"no point {out['no_point']}  ({out['seconds']:.0f} s)",
        flush=True,
    )
    return out


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
    args = ap.parse_args()
    if args.seed_draws == "resampled":
        crossover._pooled_seeds = crossover._resampled_seeds  # same signature
    print(f"seed draws: {args.seed_draws}; {args.reps} reps, {args.n_boot} draws", flush=True)
    for name in args.design or list(DESIGNS):
        run_design(name, args.reps, args.n_boot)


if __name__ == "__main__":
    main()
