"""Coverage of the crossover interval (``analysis.crossover.locate_crossover``) on planted laws.

Each repetition draws one full grid of final losses from ``analysis.adaptive_sim.PlantedStudy``
(Muennighoff et al.'s AR law vs ``analysis.synthetic.DLM_EXAMPLE`` at N = 1e8, 0.5% log-normal
seed noise, 0.1% evaluation noise), locates the crossover with its 95% bootstrap interval and
checks it against the laws' crossover. Per design it prints: coverage with a Clopper-Pearson
95% interval, misses below/above, the point estimate's bias in log-epoch (mean over draws, and
on noiseless data), the empirical SD of log(point estimate) across draws vs the bootstrap's own
SD (mean over draws, from the draws' 16/84% quantiles), and the median relative width hi/lo - 1.

    nice python bench/bench_crossover_coverage.py --reps 200 [--design grid8-1e9 ...]

Seeded: repetition r draws data with seed r and bootstraps with seed r.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.stats import beta

from analysis.adaptive_sim import PlantedStudy
from analysis.crossover import (
    _fit_pair,
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


def _boot_sd_log(points, ar, dlm, res, seed: int, n_boot: int) -> float:
    """Half the 16-84% spread of log(crossing) over the draws (non-crossing draws at +-inf)."""
    grid = np.geomspace(res["epoch_min"], res["epoch_max"], 400)
    se = _residual_se(points, ar, dlm)
    boots, _ = bootstrap_crossings(
        points, "val_loss", (ar, dlm), grid, se, n_boot, np.random.default_rng(seed)
    )
    where = {"no_crossover": math.inf, "dlm_ahead_throughout": 0.0}
    vals = np.array([e if s == "crossover" else where[s] for s, e in boots])
    q16, q84 = np.percentile(np.log(vals), [16, 84])
    return float((q84 - q16) / 2)


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
        res = locate_crossover(points, "val_loss", n_boot=n_boot, seed=r)
        est.append(res["epoch"])
        below += truth < res["epoch_lo"]
        above += truth > res["epoch_hi"]
        widths.append(res["epoch_hi"] / res["epoch_lo"] - 1)
        ar, dlm = _fit_pair(points, points["y"].to_numpy(float))
        boot_sd.append(_boot_sd_log(points, ar, dlm, res, r, n_boot))
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
        "median_width": float(np.median(widths)),
        "no_point": int((~ok).sum()),
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"{name:18s} truth {truth:6.1f}  coverage {hits}/{reps} = {hits / reps:.3f} "
        f"(CP {cp[0]:.3f}-{cp[1]:.3f}; misses below {below}, above {above})  "
        f"noiseless bias {out['noiseless_bias_pct']:+.2f}%  mean log bias "
        f"{out['mean_log_bias']:+.4f}  SD log: empirical {out['emp_sd_log']:.4f} vs "
        f"bootstrap {out['boot_sd_log']:.4f}  median width {out['median_width']:.3f}  "
        f"no point {out['no_point']}  ({out['seconds']:.0f} s)",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--design", action="append", choices=sorted(DESIGNS))
    args = ap.parse_args()
    for name in args.design or list(DESIGNS):
        run_design(name, args.reps, args.n_boot)


if __name__ == "__main__":
    main()
