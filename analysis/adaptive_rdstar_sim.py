"""Planted truth for R_D* acquisition: a multi-size study, and R_D*-only sweeps to compare.

``PlantedSizes`` is ``analysis.adaptive_sim.PlantedStudy`` at several model sizes and budgets
(one planted study per size, drawn with the same seed noise). ``rd_star_sweep`` runs the seed
design and then only R_D*-targeted batches (``analysis.adaptive_rdstar``), recording after each
batch the predicted and the refitted interval; ``grid_like`` spends the same compute on a
uniform random thinning of the full grid (what a fixed design of that cost would run). Used by
``tests/analysis/test_adaptive_rdstar.py`` and ``bench/bench_adaptive_rdstar.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analysis.adaptive import AcquisitionConfig, Candidate
from analysis.adaptive_loop import AdaptiveConfig, seed_design
from analysis.adaptive_rdstar import (
    RdStarState,
    model_sizes,
    predicted_log_width,
    rd_star_actions,
    rd_star_state,
    run_design,
)
from analysis.adaptive_sim import PlantedStudy
from analysis.laws import MUENNIGHOFF_2023, LawParams
from analysis.synthetic import DLM_EXAMPLE

# A DLM-like law whose R_D* is identifiable within 64 epochs (DLM_EXAMPLE's 500 is not).
DLM_RD40 = DLM_EXAMPLE.with_(rd_star=40.0)


@dataclass(frozen=True)
class PlantedSizes:
    """Sizes x budgets x epochs x seeds x both objectives; the pool has ``pool_seeds`` seeds
    (the grid's ``seeds`` among them). Compute is 6 N D per run."""

    sizes: tuple[float, ...] = (2.5e7, 1e8, 4e8)
    unique_tokens: tuple[int, ...] = (100_000_000, 1_000_000_000)
    epochs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    pool_seeds: int = 6
    laws: dict[str, LawParams] = field(
        default_factory=lambda: {"ar": MUENNIGHOFF_2023, "dlm": DLM_RD40}
    )
    seed_noise: float = 0.005
    eval_noise: float = 0.001

    def studies(self) -> dict[str, PlantedStudy]:
        """model_name -> the planted study of that size."""
        out = {}
        for n in self.sizes:
            s = PlantedStudy(
                n_params=n,
                unique_tokens=self.unique_tokens,
                epochs=self.epochs,
                seeds=self.seeds,
                pool_seeds=self.pool_seeds,
                pool_half_octaves=False,
                laws=self.laws,
                seed_noise=self.seed_noise,
                eval_noise=self.eval_noise,
            )
            out[s.grid()[0].model_name] = s
        return out

    def grid(self) -> list[Candidate]:
        return [_keyed(c) for s in self.studies().values() for c in s.grid()]

    def pool(self) -> list[Candidate]:
        return [_keyed(c) for s in self.studies().values() for c in s.pool()]

    def draw(self, runs: list[Candidate], rng: np.random.Generator) -> pd.DataFrame:
        studies = self.studies()
        frames = [studies[c.model_name].draw([c], rng) for c in runs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _keyed(c: Candidate) -> Candidate:
    # A planted study's keys omit the model (one size each): unique across sizes with it.
    return replace(c, key=f"{c.model_name}-{c.key}", label=f"{c.model_name}/{c.label}")


@dataclass(frozen=True)
class RdStep:
    """One R_D* batch of one objective: compute after it, the interval's log-width the design
    predicted for it and the one the refit gave."""

    step: int
    objective: str
    compute: float
    predicted: float
    actual: float
    state: RdStarState


def _spend(study: PlantedSizes, runs: list[Candidate]) -> float:
    return float(sum(c.flops for c in runs))


def seed_runs(study: PlantedSizes, seed_epochs: int = 3) -> list[Candidate]:
    """The adaptive loop's seed design on the study's pool."""
    cfg = AdaptiveConfig(target_width=math.inf, seed_epochs=seed_epochs)
    return seed_design(study.pool(), cfg)


def rd_star_sweep(
    study: PlantedSizes,
    steps: int,
    seed: int,
    acq: AcquisitionConfig | None = None,
    seed_epochs: int = 3,
) -> tuple[list[RdStep], pd.DataFrame]:
    """Seed design, then ``steps`` batches chosen for R_D* alone (both objectives each step).
    Returns the state after the seed design (step 0, nothing predicted) and after each batch
    (predicted and refitted log-width), and the final observation."""
    acq = acq or AcquisitionConfig()
    rng = np.random.default_rng(seed)
    pool = study.pool()
    first = seed_runs(study, seed_epochs)
    observed, chosen = study.draw(first, rng), list(first)
    states = {o: rd_star_state(observed, o) for o in study.laws}
    spent = _spend(study, chosen)
    log = [RdStep(0, o, spent, math.nan, s.log_width, s) for o, s in states.items()]
    for k in range(1, steps + 1):
        done = set(observed["run_id"])
        batch, predicted = [], {}
        for obj, s in states.items():
            acts = rd_star_actions(s, observed, pool, done, acq)
            runs = [r for a in acts for r in a.runs]
            predicted[obj] = predicted_log_width(s, run_design(runs, model_sizes(observed)))
            batch += runs
        if not batch:
            break
        observed = pd.concat([observed, study.draw(batch, rng)], ignore_index=True)
        chosen += batch
        states = {o: rd_star_state(observed, o) for o in study.laws}
        for obj, s in states.items():
            log.append(RdStep(k, obj, _spend(study, chosen), predicted[obj], s.log_width, s))
    return log, observed


def grid_like(
    study: PlantedSizes, start: pd.DataFrame, compute: float, seed: int
) -> tuple[dict[str, RdStarState], float]:
    """From the observation ``start``, add runs of the full grid in a seeded random order
    (a uniform thinning) while the total stays within ``compute``; refit R_D*. Returns the
    states and the compute spent (at most ``compute``)."""
    rng = np.random.default_rng(seed)
    flops = {c.key: c.flops for c in study.pool()}
    spent = float(sum(flops[k] for k in start["run_id"]))
    left = [c for c in study.grid() if c.key not in set(start["run_id"])]
    added = []
    for i in rng.permutation(len(left)):
        if spent + left[i].flops <= compute:
            added.append(left[i])
            spent += left[i].flops
    observed = pd.concat([start, study.draw(added, rng)], ignore_index=True)
    return {o: rd_star_state(observed, o) for o in study.laws}, spent
