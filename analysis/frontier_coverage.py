"""How often the frontier C_crit interval covers the truth: a simulation against planted laws.

Each repetition draws a synthetic study from two planted laws (``analysis.synthetic.law_points``:
the final loss of every (N, U, epochs, seed) run times independent log-normal seed noise), fits
both laws the way a study does (``analysis.fits.fit_data_constrained_law``: multi-start, the
run bootstrap, R_D*/R_N* profiles) and builds the per-budget table the study reports
(``analysis.frontier_table.frontier_critical_compute``). The true C_crit of each budget is the
planted laws' own (``analysis.frontier.frontier_crossover``). Nothing here is a stand-in: the
fit and the table are the production functions, only the runs' losses are drawn, not trained.

Per budget and repetition the simulation keeps the reported interval and its two parts, so that
a miss can be traced: the bootstrap part (``_bootstrap_interval`` over the paired draws) and the
profile part (the C_crit range of the R_D*/R_N* profile laws). ``summarize`` gives each budget's
coverage with a Wilson 95% interval on it (the simulation's own sampling error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.fits import fit_data_constrained_law
from analysis.frontier import frontier_crossover
from analysis.frontier_table import _bootstrap_interval, frontier_critical_compute
from analysis.laws import MUENNIGHOFF_2023, LawParams
from analysis.synthetic import law_points

# The planted pair of tests/analysis/test_frontier_table.py: DLM 10% worse per token, repeated
# data keeps its value ~6.5x longer; the frontier crossover is at ~53 x 6 U^2 FLOPs.
PLANTED_AR = MUENNIGHOFF_2023
PLANTED_DLM = MUENNIGHOFF_2023.with_(B=MUENNIGHOFF_2023.B * 1.1, rd_star=100.0)
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class CoverageDesign:
    """The planted truth and the study design each repetition draws (compute is 6 N D)."""

    ar: LawParams = PLANTED_AR
    dlm: LawParams = PLANTED_DLM
    n_params: tuple[float, ...] = (1e7, 3e7, 1e8, 3e8)
    unique_tokens: tuple[float, ...] = (1e8, 3e8, 1e9)
    epochs: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0)
    seeds: tuple[int, ...] = (0, 1)
    noise: float = 0.005  # relative seed-to-seed spread of a final loss (issue 10: 0.03-1%)
    n_boot: int = 50
    label: str = field(default="4 sizes x 3 budgets x 4 epochs x 2 seeds")

    def truth(self) -> np.ndarray:
        """The planted laws' frontier C_crit per budget (FLOPs)."""
        return np.array(
            [frontier_crossover(self.ar, self.dlm, u).compute for u in self.unique_tokens]
        )


def simulate_once(
    design: CoverageDesign, rep: int, truth: np.ndarray | None = None
) -> pd.DataFrame:
    """One synthetic study, fitted and tabled; one row per budget. Seeds are derived from
    ``rep`` alone (AR noise 2 rep, DLM noise 2 rep + 1, bootstrap seed rep), so a repetition is
    reproducible on its own."""
    truth = design.truth() if truth is None else truth
    grid = (design.n_params, design.unique_tokens, design.epochs)
    fits = {
        obj: fit_data_constrained_law(
            law_points(law, *grid, seeds=design.seeds, noise=design.noise, seed=2 * rep + i),
            obj,
            n_boot=design.n_boot,
            seed=rep,
        )
        for i, (obj, law) in enumerate((("ar", design.ar), ("dlm", design.dlm)))
    }
    result = frontier_critical_compute(fits["ar"], fits["dlm"], design.unique_tokens)
    rows = []
    for j, row in result.table.iterrows():
        if len(result.draws):
            b_lo, b_hi = _bootstrap_interval(row["compute"], result.draws[:, j])
        else:
            b_lo = b_hi = math.nan
        t = float(truth[j])
        rows.append(
            {
                "rep": rep,
                "unique_tokens": row["unique_tokens"],
                "status": row["status"],
                "truth": t,
                "compute": row["compute"],
                "lo": row["compute_lo"],
                "hi": row["compute_hi"],
                "boot_lo": b_lo,
                "boot_hi": b_hi,
                "profile_lo": row["profile_lo"],
                "profile_hi": row["profile_hi"],
                "p_crossover": row["p_crossover"],
                "covered": bool(row["compute_lo"] <= t <= row["compute_hi"]),
                "covered_boot": bool(b_lo <= t <= b_hi),
                "covered_profile": bool(row["profile_lo"] <= t <= row["profile_hi"]),
            }
        )
    return pd.DataFrame(rows)


def simulate_coverage(design: CoverageDesign, reps: range | list[int]) -> pd.DataFrame:
    """``simulate_once`` for every repetition in ``reps``, concatenated."""
    truth = design.truth()
    return pd.concat([simulate_once(design, r, truth) for r in reps], ignore_index=True)


def wilson(hits: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion (the simulation's sampling error)."""
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return centre - half, centre + half


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per budget (and all budgets together): coverage of the reported interval and of its
    bootstrap and profile parts, the Wilson interval on the reported coverage, the median
    interval width as hi / lo, and the median point estimate over the truth."""
    out = []
    groups = [(f"{u:.3g}", g) for u, g in frame.groupby("unique_tokens")] + [("all", frame)]
    for label, g in groups:
        n, hits = len(g), int(g["covered"].sum())
        lo, hi = wilson(hits, n)
        out.append(
            {
                "unique_tokens": label,
                "n": n,
                "coverage": hits / n,
                "wilson_lo": lo,
                "wilson_hi": hi,
                "coverage_boot": float(g["covered_boot"].mean()),
                "coverage_profile": float(g["covered_profile"].mean()),
                "median_width": float(np.nanmedian(g["hi"] / g["lo"])),
                "median_point_over_truth": float(np.nanmedian(g["compute"] / g["truth"])),
            }
        )
    return pd.DataFrame(out)
