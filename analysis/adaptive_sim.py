"""Planted-law simulation of an adaptive sweep: the known truth its policy is tested against.

A "dispatch" here draws each run's final loss from the planted laws (``analysis.laws``) with a
per-run seed effect and evaluation noise, as ``analysis.synthetic`` does for written studies;
what is under test is the acquisition policy (``analysis.adaptive``), not the training path
(``flows.adaptive`` runs the real one). Compute is 6 N D per run (D = epochs x U).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.adaptive import Candidate, Group, Interval
from analysis.adaptive_loop import AdaptiveConfig, AdaptiveResult, group_intervals, run_adaptive
from analysis.critical_compute import law_crossover_tokens
from analysis.laws import MUENNIGHOFF_2023, LawParams, data_constrained_loss
from analysis.synthetic import DLM_EXAMPLE


@dataclass(frozen=True)
class PlantedStudy:
    """The grid and the truth: one model size, its budgets, and an epoch grid reaching well
    past the crossover (at U = 1e9, N = 1e8 the laws cross at ~51 epochs; at U = 1e8, ~181:
    a grid shared by both budgets must reach 512)."""

    n_params: float = 1e8
    unique_tokens: tuple[int, ...] = (1_000_000_000,)
    epochs: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    laws: dict[str, LawParams] = field(
        default_factory=lambda: {"ar": MUENNIGHOFF_2023, "dlm": DLM_EXAMPLE}
    )
    seed_noise: float = 0.005  # relative seed-to-seed spread of a final loss
    eval_noise: float = 0.001  # relative evaluation noise, reported as the SE

    def candidates(self) -> list[Candidate]:
        return [
            Candidate(
                key=f"{obj}-U{u}-e{e:g}-s{s}",
                label=f"{obj}/U{u:.3g}/ep{e:g}/s{s}",
                objective=obj,
                model_name=f"n{self.n_params:g}",
                unique_tokens=u,
                epochs=e,
                seed=s,
                flops=6.0 * self.n_params * u * e,
            )
            for obj in self.laws
            for u in self.unique_tokens
            for e in self.epochs
            for s in self.seeds
        ]

    def truth(self, unique_tokens: int) -> float:
        """The planted laws' crossover, in epochs."""
        d = law_crossover_tokens(self.laws["ar"], self.laws["dlm"], self.n_params, unique_tokens)
        return d / unique_tokens

    def draw(self, runs: list[Candidate], rng: np.random.Generator) -> pd.DataFrame:
        """Final losses of ``runs`` (rows in the shape ``run_adaptive``'s observe returns)."""
        rows = []
        for c in runs:
            tokens = c.epochs * c.unique_tokens
            clean = float(
                data_constrained_loss(
                    self.n_params, tokens, c.unique_tokens, self.laws[c.objective]
                )
            )
            noise = (
                self.seed_noise * rng.standard_normal() + self.eval_noise * rng.standard_normal()
            )
            rows.append(
                {
                    "run_id": c.key,
                    "seed": c.seed,
                    "objective": c.objective,
                    "model_name": c.model_name,
                    "unique_tokens": c.unique_tokens,
                    "epoch": c.epochs,
                    "y": clean * math.exp(noise),
                    "se": self.eval_noise * clean,
                    "flops": c.flops,
                }
            )
        return pd.DataFrame(rows)


@dataclass
class SimulatedSweep:
    """The ``run``/``observe`` pair of ``run_adaptive`` over a planted study."""

    study: PlantedStudy
    rng: np.random.Generator
    observed: pd.DataFrame = field(default_factory=pd.DataFrame)

    def run(self, batch: list[Candidate]) -> None:
        new = [c for c in batch if self.observed.empty or c.key not in set(self.observed["run_id"])]
        self.observed = pd.concat(
            [self.observed, self.study.draw(new, self.rng)], ignore_index=True
        )

    def observe(self) -> pd.DataFrame:
        if self.observed.empty:
            return pd.DataFrame(columns=["run_id", "model_name", "unique_tokens", "objective"])
        return self.observed


def full_grid(
    study: PlantedStudy, cfg: AdaptiveConfig, seed: int
) -> tuple[dict[Group, Interval], float]:
    """Every run of the grid: the intervals and the compute of the design being replaced."""
    sweep = SimulatedSweep(study, np.random.default_rng(seed))
    cands = study.candidates()
    sweep.run(cands)
    groups = sorted({c.group for c in cands})
    return group_intervals(sweep.observe(), groups, cfg), float(sum(c.flops for c in cands))


def adaptive(study: PlantedStudy, cfg: AdaptiveConfig, seed: int) -> AdaptiveResult:
    """The adaptive loop on ``study`` with the planted-law dispatch."""
    sweep = SimulatedSweep(study, np.random.default_rng(seed))
    return run_adaptive(study.candidates(), sweep.run, sweep.observe, cfg)
