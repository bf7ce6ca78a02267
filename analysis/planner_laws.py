"""Where the planner's laws come from: a study's fits (in memory or its DuckDB), or a stated prior.

A study's law for one objective is usable when stage 1 (A, alpha, E, B, beta) and R_D* pass the
identifiability gates of ``analysis.fits``; its uncertainty is the fit's bootstrap draws, kept in
the DuckDB table ``law_fit_draws`` beside ``law_fits`` (written by the analysis, one row per draw
and objective). Where R_N* is not identified, sizes are limited to N <= N_opt(U).

The published prior (``--prior published``) is a distribution, stated here in full:

- AR: Muennighoff et al. (2023), "Scaling Data-Constrained Language Models", their fitted
  constants (``analysis.laws.MUENNIGHOFF_2023``: A 520.8, B 1487.7, E 1.869, alpha = beta
  0.3527, R_D* 15.39, R_N* 5.31). R_D* is poorly pinned by their data (the objective is nearly
  flat over a wide range), so the prior spreads it log-normally, 95% within x/ 2.
- DLM: Prabhudesai et al. (2025), "Diffusion Beats Autoregressive in Data-Constrained Settings"
  (arXiv 2507.15857), state the half-life of repeated data R_D* ~ 500 for masked diffusion
  against ~ 15 for AR (the same as Muennighoff's). That value, spread 95% within x/ 2, is the
  DLM's R_D*.
- What the prior must assume (not taken from a published fit here): the DLM's single-epoch law
  is AR's needing GAP times the compute to reach the same loss on the Chinchilla frontier: both
  reducible terms scale by GAP^gamma, gamma = alpha beta / (alpha + beta) (A and B together, so
  N_opt(U) stays AR's: the gap is one of compute, not of allocation); GAP is log-normal, 95% range
  [2, 16] (16x is the compute gap Nie et al. (2024, "Scaling up Masked Diffusion Models on
  Text") measured for masked diffusion; Prabhudesai et al. argue part of it is data, not
  compute, hence the range down to 2x). The DLM's R_N* is taken as AR's (5.31).
Stage-1 constants are held at the published values (no spread).

Prabhudesai et al.'s own fitted constants (their table of A, B, E, alpha, beta, R_D*, R_N* for
AR and for diffusion) would make a matched prior; they were looked for on 2026-11-30 and NOT
found in what this project can read: the authors' public code (github.com/wmn-231314/
diffusion-data-constraint: training and evaluation scripts, no law fit, no constants), the arXiv
HTML of 2507.15857 (v2, v5, v7) and the project page https://diffusion-scaling.github.io (only
their opening sections are available here; the table is not), the authors' blog post ("R_D*
~500 for diffusion vs ~15 for AR") and third-party summaries. Those summaries quote R_D* =
512.85 (diffusion) and 31.93 (AR), which could not be checked against the paper and are not
used. What the prior is checked against instead is the paper's closed form for the critical
compute, C_crit(U) = 2.12e15 (U / 1e6)^2.174 FLOPs (C = 6 N D; quoted by third parties, and
consistent with the paper's largest runs: 4.7e19 FLOPs at U = 100M): at the paper's budgets
(25M, 50M, 100M unique tokens) the prior's C_crit is 0.59-0.75x it
(``tests/analysis/test_planner_laws.py``). The prior's C_crit grows as U^2 exactly (both laws
share alpha = beta and N_opt(U) ~ U), the paper's as U^2.174, so far beyond their budgets the
two part (0.26x at U = 1e10).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analysis.fits import IDENTIFIED, PARAMS, LawFit
from analysis.laws import MUENNIGHOFF_2023, LawParams
from analysis.planner import LawSet, ObjectiveLaw

PRIOR_AR_RD_STAR = MUENNIGHOFF_2023.rd_star  # Muennighoff et al. 2023 (15.39)
PRIOR_DLM_RD_STAR = 500.0  # Prabhudesai et al. 2025: "R_D* ~ 500" for masked diffusion
PRIOR_RD_FACTOR = 2.0  # 95% of prior draws within x/ 2 of each R_D*
PRIOR_GAP = (2.0, 16.0)  # 95% range of the DLM's single-epoch data gap (see module docstring)
PRIOR_DRAWS = 200
# Prabhudesai et al. 2025 (arXiv 2507.15857), the critical compute they state (a check, not
# an input): C_crit(U) = 2.12e15 (U / 1e6)^2.174 FLOPs, U unique tokens, C = 6 N D.
PRABHUDESAI_CCRIT = (2.12e15, 2.174)
PRIOR_SOURCE = (
    "published prior: AR = Muennighoff et al. 2023; DLM R_D* ~ 500 = Prabhudesai et al. 2025; "
    "DLM single-epoch data gap 2-16x (assumed)"
)
_Z95 = 1.959963984540054


def _dlm_law(ar: LawParams, gap: float, rd_star: float) -> LawParams:
    # E + s (A/N^a + B/D^b) with s = GAP^gamma: on the frontier L*(C) - E ~ C^-gamma, so the
    # DLM's reducible loss at C equals AR's at C / GAP.
    s = gap ** (ar.alpha * ar.beta / (ar.alpha + ar.beta))
    return ar.with_(A=ar.A * s, B=ar.B * s, rd_star=rd_star)


def published_prior(n_draws: int = PRIOR_DRAWS, seed: int = 0) -> LawSet:
    """The stated prior of the module docstring as a LawSet (point = the medians)."""
    rng = np.random.default_rng(seed)

    def lognormal(centre: float, factor95: float) -> np.ndarray:
        return centre * np.exp(rng.standard_normal(n_draws) * math.log(factor95) / _Z95)

    gap_centre = math.sqrt(PRIOR_GAP[0] * PRIOR_GAP[1])
    gap_factor = math.sqrt(PRIOR_GAP[1] / PRIOR_GAP[0])
    ar_rd = lognormal(PRIOR_AR_RD_STAR, PRIOR_RD_FACTOR)
    dlm_rd = lognormal(PRIOR_DLM_RD_STAR, PRIOR_RD_FACTOR)
    gaps = lognormal(gap_centre, gap_factor)
    ar = MUENNIGHOFF_2023
    laws = {
        "ar": ObjectiveLaw("ar", IDENTIFIED, ar, tuple(ar.with_(rd_star=float(r)) for r in ar_rd)),
        "dlm": ObjectiveLaw(
            "dlm",
            IDENTIFIED,
            _dlm_law(ar, gap_centre, PRIOR_DLM_RD_STAR),
            tuple(_dlm_law(ar, float(g), float(r)) for g, r in zip(gaps, dlm_rd, strict=True)),
        ),
    }
    notes = (
        "a prior, not a fit: stage-1 constants are Muennighoff et al.'s for both objectives; "
        f"R_D* AR {PRIOR_AR_RD_STAR:.4g}, DLM {PRIOR_DLM_RD_STAR:.4g} (each x/ "
        f"{PRIOR_RD_FACTOR:g} at 95%); DLM single-epoch data gap {PRIOR_GAP[0]:g}-"
        f"{PRIOR_GAP[1]:g}x (95%, an assumption); R_N* 5.31 for both",
    )
    return LawSet(laws, PRIOR_SOURCE, notes)


def _law_status(statuses: Mapping[str, str]) -> str:
    """IDENTIFIED when stage 1 and R_D* are, else the first reason (never a number)."""
    for name in ("A", "rd_star"):
        status = statuses.get(name, "not identified: no fit")
        if status != IDENTIFIED:
            return f"{'stage 1 (A, alpha, E)' if name == 'A' else 'R_D*'} {status}"
    return IDENTIFIED


def laws_from_fits(fits: Mapping[str, LawFit], source: str) -> LawSet:
    """LawSet from in-memory fits (the report's ``StudyAnalysis.law_fits``)."""
    laws = {}
    for obj, fit in fits.items():
        statuses = {n: e.status for n, e in fit.estimates.items()}
        draws = tuple(LawParams(**row) for row in fit.bootstrap.to_dict("records"))
        laws[obj] = _objective_law(obj, statuses, fit.params, draws)
    return LawSet(laws, source, _cap_notes(laws))


def _objective_law(
    obj: str, statuses: Mapping[str, str], params: LawParams | None, draws: tuple[LawParams, ...]
) -> ObjectiveLaw:
    status = _law_status(statuses)
    if status != IDENTIFIED or params is None:
        return ObjectiveLaw(obj, status)
    cap = statuses.get("rn_star") != IDENTIFIED
    if cap:  # excess parameters are priced by nothing the data pins: stay at N <= N_opt(U)
        params = params.with_(rn_star=math.inf)
        draws = tuple(d.with_(rn_star=math.inf) for d in draws)
    return ObjectiveLaw(obj, IDENTIFIED, params, draws, cap_at_n_opt=cap)


def _cap_notes(laws: Mapping[str, ObjectiveLaw]) -> tuple[str, ...]:
    return tuple(
        f"{o}: R_N* not identified, so sizes are limited to N <= N_opt(U)"
        for o, law in laws.items()
        if law.cap_at_n_opt
    )


def draws_table(fits: Mapping[str, LawFit]) -> pd.DataFrame:
    """The DuckDB ``law_fit_draws`` table: one row per (objective, bootstrap draw)."""
    frames = [
        fit.bootstrap.assign(objective=obj, draw=np.arange(len(fit.bootstrap)))
        for obj, fit in fits.items()
        if len(fit.bootstrap)
    ]
    if not frames:
        return pd.DataFrame(columns=["objective", "draw", *PARAMS])
    return pd.concat(frames, ignore_index=True)[["objective", "draw", *PARAMS]]


def laws_from_tables(fits: pd.DataFrame, draws: pd.DataFrame | None, source: str) -> LawSet:
    """LawSet from the ``law_fits`` and ``law_fit_draws`` (None: absent) tables of a study."""
    draws = pd.DataFrame(columns=["objective", "draw", *PARAMS]) if draws is None else draws
    laws = {}
    for obj, rows in fits.groupby("objective"):
        statuses = dict(zip(rows["parameter"], rows["status"], strict=True))
        values = dict(zip(rows["parameter"], rows["value"], strict=True))
        params = None
        if all(pd.notna(values.get(n)) for n in PARAMS if n != "rn_star"):
            rn = values.get("rn_star")
            params = LawParams(
                **{n: float(values[n]) for n in PARAMS if n != "rn_star"},
                rn_star=float(rn) if pd.notna(rn) else math.nan,
            )
        mine = draws[draws["objective"] == obj].sort_values("draw")
        own = tuple(LawParams(**{n: float(r[n]) for n in PARAMS}) for _, r in mine.iterrows())
        laws[str(obj)] = _objective_law(str(obj), statuses, params, own)
    notes = _cap_notes(laws)
    if len(draws) == 0 and any(law.identified for law in laws.values()):
        notes += ("no bootstrap draws stored (law_fit_draws): intervals unknown",)
    return LawSet(laws, source, notes)
