"""The planner against known truth: planted laws whose optimum and AR/DLM boundary are known in
closed form (or from an independent brute-force search), the verdict flipping across the
boundary, "too close to call" on it, "not identified" for a one-size study, and the published
prior as stated."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.fits import IDENTIFIED, PARAMS, Estimate, LawFit, fit_table
from analysis.laws import MUENNIGHOFF_2023, LawParams, data_constrained_loss
from analysis.planner import (
    NO_INTERVAL,
    TOO_CLOSE,
    LawSet,
    ObjectiveLaw,
    critical_compute_band,
    make_plan,
    optimal_losses,
    plan_grid,
)
from analysis.planner_laws import (
    PRIOR_GAP,
    draws_table,
    laws_from_fits,
    laws_from_tables,
    published_prior,
)
from analysis.planner_report import format_plan, plan_rows, region_figure, region_text
from analysis.store import ResultsStore
from analysis.study import analyze_study
from analysis.synthetic import SyntheticStudySpec, write_synthetic_study

INF = math.inf
A_, B_, ALPHA = 400.0, 1600.0, 0.34
# Chinchilla laws (no repetition decay): with alpha = beta = a the optimum at C = 6 N D has
# equal terms, A/N^a = B/D^a = sqrt(AB) (C/6)^(-a/2), so L*(C) = E + 2 sqrt(AB) (C/6)^(-a/2)
# and N* = (A/B)^(1/(2a)) (C/6)^(1/2). DLM: both terms x S, E lower by DE: the two optima
# cross where DE = (S - 1) 2 sqrt(AB) (C/6)^(-a/2).
AR_TRUE = LawParams(A_, B_, 2.0, ALPHA, ALPHA, INF, INF)
S, DE = 1.5, 0.05
DLM_TRUE = AR_TRUE.with_(A=A_ * S, B=B_ * S, E=2.0 - DE)
C_CRIT = 6.0 * ((S - 1) * 2 * math.sqrt(A_ * B_) / DE) ** (2 / ALPHA)
U = 1e12  # any: without decay U plays no part (the optimum stays inside the epoch grid)


def _closed_form(p: LawParams, c: float) -> tuple[float, float]:
    return (
        p.E + 2 * math.sqrt(p.A * p.B) * (c / 6) ** (-p.alpha / 2),
        (p.A / p.B) ** (1 / (2 * p.alpha)) * math.sqrt(c / 6),
    )


def _laws(ar: LawParams, dlm: LawParams, spread: float = 0.0, n: int = 200) -> LawSet:
    """Point laws plus draws whose E carries log-normal noise of relative size ``spread``."""
    rng = np.random.default_rng(0)

    def draws(p: LawParams) -> tuple[LawParams, ...]:
        return tuple(p.with_(E=p.E * math.exp(spread * z)) for z in rng.standard_normal(n))

    return LawSet(
        {
            "ar": ObjectiveLaw("ar", IDENTIFIED, ar, draws(ar)),
            "dlm": ObjectiveLaw("dlm", IDENTIFIED, dlm, draws(dlm)),
        },
        "planted",
    )


def test_optimum_over_size_and_epochs_matches_the_closed_form() -> None:
    for c in (1e18, C_CRIT, 1e24):
        loss, epochs = optimal_losses(AR_TRUE, np.array([U]), np.array([c]))
        want_loss, want_n = _closed_form(AR_TRUE, c)
        n = c / (6 * epochs[0] * U)
        assert loss[0] == pytest.approx(want_loss, rel=1e-9)
        assert n == pytest.approx(want_n, rel=2e-3)  # L is flat at its minimum: N less pinned


def test_boundary_matches_the_analytic_one_and_the_answer_flips_across_it() -> None:
    laws = _laws(AR_TRUE, DLM_TRUE, spread=2e-4, n=60)
    band = critical_compute_band(laws, np.array([1e10, 1e12]), (C_CRIT / 1e3, C_CRIT * 1e3))
    assert band["c_crit"].to_numpy() == pytest.approx([C_CRIT, C_CRIT], rel=1e-3)
    assert (band["c_lo"] < C_CRIT).all() and (band["c_hi"] > C_CRIT).all()
    assert (band["p_cross"] == 1.0).all()
    below, above = (make_plan(laws, U, C_CRIT * f, 0.95) for f in (1 / 4, 4))
    assert below.verdict == "ar" and below.diff_lo > 0
    assert above.verdict == "dlm" and above.diff_hi < 0
    assert above.recommended.n_params == pytest.approx(_closed_form(DLM_TRUE, 4 * C_CRIT)[1], 2e-3)
    grid = plan_grid(laws, np.array([U]), np.array([C_CRIT / 4, C_CRIT * 4]))
    assert grid["verdict"].tolist() == ["ar", "dlm"]


def test_too_close_to_call_near_the_boundary() -> None:
    laws = _laws(AR_TRUE, DLM_TRUE, spread=2e-3)
    plan = make_plan(laws, U, C_CRIT * 1.05, 0.95)
    assert plan.verdict == TOO_CLOSE and plan.diff_lo < 0 < plan.diff_hi
    assert 0 < plan.p_dlm_better < 1 and plan.recommended is None
    assert "too close to call" in format_plan(plan)
    assert make_plan(laws, U, C_CRIT * 30, 0.95).verdict == "dlm"  # decisive further out


def _brute_force_c_crit(ar: LawParams, dlm: LawParams, u: float) -> float:
    """Independent reference: dense N grid (no parabola), bisection on log C."""

    def best(p: LawParams, c: float) -> float:
        n = np.geomspace(c / (6 * u * 1e4), c / (6 * u * 1e-3), 20001)
        return float(data_constrained_loss(n, c / (6 * n), u, p).min())

    lo, hi = math.log(1e15), math.log(1e28)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if best(dlm, math.exp(mid)) > best(ar, math.exp(mid)) else (lo, mid)
    return math.exp(0.5 * (lo + hi))


def test_budget_dependent_boundary_matches_a_brute_force_search() -> None:
    """Repetition decay makes C_crit depend on U: AR R_D* 15, DLM R_D* 500 with a 1.3x
    worse single-epoch law (the decay terms keep N'<= N_opt, so the optimum is interior)."""
    ar = MUENNIGHOFF_2023.with_(rn_star=INF)
    dlm = ar.with_(A=ar.A * 1.3, B=ar.B * 1.3, rd_star=500.0)
    laws = _laws(ar, dlm, spread=1e-3, n=40)
    budgets = np.array([1e8, 1e9])
    band = critical_compute_band(laws, budgets, (1e16, 1e26))
    for u, got in zip(budgets, band["c_crit"], strict=True):
        assert got == pytest.approx(_brute_force_c_crit(ar, dlm, u), rel=0.02)
    assert band["c_crit"].iloc[1] > 10 * band["c_crit"].iloc[0]  # later with more data
    c = float(band["c_crit"].iloc[1])
    assert make_plan(laws, 1e9, c / 10, 0.95).verdict == "ar"
    assert make_plan(laws, 1e9, c * 10, 0.95).verdict == "dlm"


def test_published_prior_is_the_stated_one() -> None:
    laws = published_prior(n_draws=50)
    assert laws.laws["ar"].params == MUENNIGHOFF_2023
    assert laws.laws["dlm"].params.rd_star == 500.0
    # Stated: the DLM needs GAP x the compute on the single-epoch frontier (U far above D:
    # D* ~ 1e10 tokens at 1e19 FLOPs, so repetition plays no part).
    gap = math.sqrt(PRIOR_GAP[0] * PRIOR_GAP[1])
    big_u, c = np.array([1e12]), np.array([1e19])
    l_ar = optimal_losses(laws.laws["ar"].params, big_u, c)[0]
    l_dlm = optimal_losses(laws.laws["dlm"].params, big_u, c * gap)[0]
    assert l_dlm[0] == pytest.approx(l_ar[0], rel=1e-6)
    low = make_plan(laws, 1e9, 1e19, 0.95)  # compute-limited: AR, decisively
    assert low.verdict == "ar" and low.diff_lo > 0 and low.n_draws == 50
    assert "Muennighoff" in low.source and "Prabhudesai" in low.source


def _fit(obj: str, truth: LawParams, rn_identified: bool, n_boot: int = 30) -> LawFit:
    """A LawFit as fits.py returns it, with planted values and bootstrap draws."""
    rng = np.random.default_rng(1)
    boot = pd.DataFrame(
        [truth.with_(E=truth.E * math.exp(1e-3 * z)).as_dict() for z in rng.standard_normal(n_boot)]
    )
    est = {n: Estimate(n, IDENTIFIED, getattr(truth, n), 0.0, 1.0) for n in PARAMS}
    if not rn_identified:
        est["rn_star"] = Estimate("rn_star", "not identified: 0 run(s) with N > 2 N_opt(U)")
    return LawFit(obj, est, truth, 0.1, 0.99, 64, boot)


def test_study_laws_round_trip_through_duckdb(tmp_path: Path) -> None:
    fits = {"ar": _fit("ar", AR_TRUE, True), "dlm": _fit("dlm", DLM_TRUE, False)}
    store = ResultsStore(tmp_path / "r.duckdb")
    store.replace_derived_table("law_fits", fit_table(fits))
    store.replace_derived_table("law_fit_draws", draws_table(fits))
    stored = laws_from_tables(
        store.query("FROM law_fits"), store.query("FROM law_fit_draws"), "study x"
    )
    direct = laws_from_fits(fits, "study x")
    assert stored.laws["dlm"].cap_at_n_opt and not stored.laws["ar"].cap_at_n_opt
    assert any("N <= N_opt(U)" in n for n in stored.notes)
    # U large enough that the optimum stays below the cap N_opt(U) of the DLM (R_N* unknown).
    a, b = (make_plan(s, 1e14, C_CRIT * 4, 0.95) for s in (stored, direct))
    assert a.verdict == b.verdict == "dlm"
    assert a.diff == pytest.approx(b.diff) and a.diff_lo == pytest.approx(b.diff_lo)
    assert len(plan_rows(a)) == 2


def test_one_size_study_is_not_identified_and_recommends_nothing(tmp_path: Path) -> None:
    spec = SyntheticStudySpec(unique_tokens=(10**8, 10**9), epochs=(1.0, 4.0, 16.0))
    write_synthetic_study(tmp_path, spec)
    db = tmp_path / "r.duckdb"
    with ResultsStore(db) as store:
        store.ingest_runs_root(tmp_path / "runs")
    analysis = analyze_study(db, n_boot=5)
    plan = make_plan(laws_from_fits(analysis.law_fits, "study"), 1e9, 1e21, 0.95)
    assert plan.verdict.startswith("not identified") and "1 model size" in plan.verdict
    assert not plan.options and "no recommendation" in format_plan(plan)
    stored = laws_from_tables(
        ResultsStore(db).query("FROM law_fits"), ResultsStore(db).query("FROM law_fit_draws"), "s"
    )
    assert make_plan(stored, 1e9, 1e21, 0.95).verdict == plan.verdict


def test_region_text_and_figure_show_the_verdicts() -> None:
    laws = _laws(AR_TRUE, DLM_TRUE, spread=2e-4, n=20)
    u, c = np.array([1e10, 1e12]), np.array([C_CRIT / 10, C_CRIT * 10])
    grid = plan_grid(laws, u, c)
    text = region_text(grid)
    assert text.count("AR") == 2 and text.count("DLM") == 2
    band = critical_compute_band(laws, u, (C_CRIT / 10, C_CRIT * 10), n_c=21)
    fig = region_figure(grid, band, "t")
    names = {t.name for t in fig.data}
    assert {"DLM better", "AR better"} <= names


def _analysis(fits: dict[str, LawFit]):
    from analysis.study import StudyAnalysis

    runs = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "status": ["completed", "completed"],
            "n_params": [1e11, 1e11],
            "unique_tokens": [1e13, 1e14],
            "epochs": [1.0, 1.0],
        }
    )
    return StudyAnalysis(runs=runs, evals=pd.DataFrame(), excluded=pd.DataFrame(), law_fits=fits)


def test_report_section_plans_each_budget_or_says_why_not() -> None:
    from analysis.planner_report import plan_section
    from analysis.report import render_html

    fits = {"ar": _fit("ar", AR_TRUE, True, 20), "dlm": _fit("dlm", DLM_TRUE, True, 20)}
    page = render_html(_analysis(fits), {}, "t")
    assert '<section id="plan">' in page and 'id="fig-plan"' in page
    section = page.split('<section id="plan">')[1].split("</section>")[0]
    plans = section.split("<table")[1]  # the first table: one row per budget and objective
    assert plans.count("<td>1e+13</td>") == plans.count("<td>1e+14</td>") == 2
    one_size = {"ar": fit_data_free("ar"), "dlm": fit_data_free("dlm")}
    html = plan_section(_analysis(one_size))
    assert "No recommendation" in html and "1 model size" in html and "fig-plan" not in html


def fit_data_free(obj: str) -> LawFit:
    """What fits.py returns for a one-size design (statuses only, no numbers)."""
    why = "not identified: 1 model size(s), need >= 3"
    return LawFit(obj, {n: Estimate(n, why) for n in PARAMS}, None, math.nan, math.nan, 12)


def test_without_draws_there_is_no_verdict_only_the_point_answer() -> None:
    laws = LawSet(
        {o: ObjectiveLaw(o, IDENTIFIED, p) for o, p in (("ar", AR_TRUE), ("dlm", DLM_TRUE))}, "x"
    )
    plan = make_plan(laws, U, C_CRIT * 4, 0.95)
    assert plan.verdict == NO_INTERVAL and plan.diff < 0 and plan.diff_lo is None
    assert plan.options["dlm"].loss_lo is None
    text = format_plan(plan)
    assert "recommendation: none (no verdict" in text and "[interval unknown]" in text


def test_planner_and_frontier_estimators_agree_at_the_same_flops_convention() -> None:
    """Two estimators of the same frontier (the planner's, C = 6ND for both objectives, and
    analysis.frontier's, per-objective k): at k = 6 for both they must give the same optimum
    and the same C_crit(U) on a U-dependent planted pair."""
    from analysis.frontier import compute_optimal, frontier_crossover

    ar = MUENNIGHOFF_2023.with_(rn_star=INF)
    dlm = ar.with_(A=ar.A * 1.3, B=ar.B * 1.3, rd_star=500.0)
    laws = _laws(ar, dlm, spread=1e-3, n=10)
    budgets = np.array([1e8, 1e9])
    band = critical_compute_band(laws, budgets, (1e16, 1e26))
    for u, planner_c in zip(budgets, band["c_crit"], strict=True):
        front = frontier_crossover(ar, dlm, u, flops_per_param=(6.0, 6.0))
        assert front.status == "crossover"
        assert front.compute == pytest.approx(planner_c, rel=0.01)
        for c in (planner_c / 10, planner_c * 10):
            mine, _ = optimal_losses(ar, np.array([u]), np.array([c]))
            theirs = compute_optimal(ar, u, c, flops_per_param=6.0).loss[0]
            assert mine[0] == pytest.approx(theirs, rel=1e-6)
