"""R_D* as an acquisition target on planted laws (analysis.adaptive_rdstar_sim): is the
linearised prediction right, does targeting beat a grid-like rule per FLOP, does it cover?

    PYTHONPATH=. .venv/bin/python bench/bench_adaptive_rdstar.py [--reps 12] [--steps 3]

Study: 3 sizes (2.5e7, 1e8, 4e8) x 2 budgets (1e8, 1e9) x epochs 1..64 (octaves) x AR/DLM,
planted AR = Muennighoff et al. (R_D* 15.39), DLM = the same with B x 1.3 and R_D* = 40, seed
noise 0.5% per run. Each repetition (its own seed): the seed design (lowest 4 epoch settings x
3 seeds), then ``--steps`` batches chosen for R_D* alone (2 actions per objective and step),
each followed by the real law refit (profile interval). Reported: (1) per batch, the log-width
the linearised design predicted vs the refit's; (2) the R_D* log-width drop per FLOP against a
grid-like rule (the same extra compute on a uniform random thinning of the full grid's
remaining runs, from the same seed-design draws); (3) how often the final interval holds the
planted R_D* (Clopper-Pearson 95% on the count).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from analysis.adaptive_rdstar_sim import (  # noqa: E402
    PlantedSizes,
    grid_like,
    rd_star_sweep,
    seed_runs,
)
from analysis.binomial import clopper_pearson  # noqa: E402


def _pairs(mine: list) -> list[tuple[float, float, float]]:
    """(log-width before the batch, predicted after it, refitted after it) per batch."""
    return [(a.actual, b.predicted, b.actual) for a, b in zip(mine, mine[1:], strict=False)]


def one_rep(study: PlantedSizes, rep: int, steps: int) -> dict[str, dict]:
    log, observed = rd_star_sweep(study, steps, seed=rep, seed_epochs=4)
    first = {r.objective: r for r in log if r.step == 0}
    last = {r.objective: r for r in log}
    start = observed[observed["run_id"].isin({c.key for c in seed_runs(study, 4)})]
    compute = max(r.compute for r in log)
    grid, grid_spent = grid_like(study, start, compute, seed=10_000 + rep)
    out = {}
    for obj, truth in ((o, law.rd_star) for o, law in study.laws.items()):
        s, g = last[obj].state, grid[obj]
        out[obj] = {
            "w0": first[obj].actual,
            "w_adapt": s.log_width,
            "w_grid": g.log_width,
            "extra": compute - first[obj].compute,
            "extra_grid": grid_spent - first[obj].compute,
            "pairs": _pairs([r for r in log if r.objective == obj]),
            "covers": s.identified and s.lo <= truth <= s.hi,
            "grid_covers": g.identified and g.lo <= truth <= g.hi,
            "identified": s.identified,
            "text": s.describe(),
        }
    return out


def summarise(results: list[dict[str, dict]], study: PlantedSizes) -> None:
    print("\n| objective | planted R_D* | reps identified | log-width: seed -> targeted "
          "| grid-like, same extra FLOPs | targeted narrower | drop per FLOP, median "
          "targeted / grid | covers (CP 95%) | grid-like covers (of all reps) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for obj, law in study.laws.items():
        rows = [r[obj] for r in results if r[obj]["identified"]]
        if not rows:
            print(f"| {obj} | {law.rd_star:g} | 0/{len(results)} | not identified |")
            continue
        finite = [r for r in rows if math.isfinite(r["w_grid"])]
        better = sum(r["w_adapt"] < r["w_grid"] for r in rows)
        ratio = [
            ((r["w0"] - r["w_adapt"]) / r["extra"]) / ((r["w0"] - r["w_grid"]) / r["extra_grid"])
            for r in finite
            if r["extra_grid"] > 0 and r["w0"] > r["w_grid"]
        ]
        k, n = sum(r["covers"] for r in rows), len(rows)
        lo, hi = clopper_pearson(k, n)
        gk = sum(r[obj]["grid_covers"] for r in results)
        print(
            f"| {obj} | {law.rd_star:g} | {n}/{len(results)} "
            f"| {statistics.median(r['w0'] for r in rows):.3f} -> "
            f"{statistics.median(r['w_adapt'] for r in rows):.3f} "
            f"| {statistics.median(r['w_grid'] for r in rows):.3f} | {better}/{n} "
            f"| {statistics.median(ratio) if ratio else math.nan:.3g} (n={len(ratio)}) "
            f"| {k}/{n} [{lo:.2f}, {hi:.2f}] | {gk}/{len(results)} |"
        )
    pairs = [p for r in results for o in r.values() for p in o["pairs"]]
    for name, keep in (("all", lambda w: True), ("log-width <= 1 before", lambda w: w <= 1),
                       ("log-width > 1 before", lambda w: w > 1)):  # fmt: skip
        rel = [a / p - 1 for w, p, a in pairs if math.isfinite(p * a) and keep(w)]
        if rel:
            print(
                f"linearised prediction vs refit ({name}), {len(rel)} batches: actual/predicted"
                f" - 1 median {statistics.median(rel):+.3f}, median |.| "
                f"{statistics.median(abs(x) for x in rel):.3f}, range [{min(rel):+.3f}, "
                f"{max(rel):+.3f}]"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    study = PlantedSizes()
    t0, results = time.time(), []
    for rep in range(args.reps):
        res = one_rep(study, rep, args.steps)
        results.append(res)
        print(
            f"rep {rep}: "
            + "; ".join(
                f"{o} {r['text']} w {r['w0']:.3f}->{r['w_adapt']:.3f} grid {r['w_grid']:.3f} "
                f"(+{r['extra']:.2e} FLOPs)"
                for o, r in res.items()
            )
            + f"  [{time.time() - t0:.0f} s]",
            flush=True,
        )
    summarise(results, study)
    print(f"\n{args.reps} reps in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
