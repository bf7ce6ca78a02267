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


def half_octaves(epochs: tuple[float, ...]) -> tuple[float, ...]:
    """The settings plus the geometric midpoint of each neighbouring pair (4, 5.66, 8, ...)."""
    mids = [math.sqrt(a * b) for a, b in zip(epochs, epochs[1:], strict=False)]
    return tuple(sorted({*epochs, *(round(m, 2) for m in mids)}))


@dataclass(frozen=True)
class PlantedStudy:
    """The truth, the design it is compared with, and the pool the adaptive sweep picks from.

    The comparator is the grid a researcher would otherwise run: ``epochs`` x ``seeds`` x both
    objectives (8 log-spaced settings 4..512 x 3 seeds: 48 runs). The pool is the same study
    with more seeds per setting (``pool_seeds``) and, with ``pool_half_octaves``, the
    half-octave settings between the grid's: an adaptive sweep may put 8 seeds where the
    crossover is, which a fixed grid cannot. One model size; at N = 1e8 the laws cross at ~51
    epochs for U = 1e9 and ~181 for U = 1e8 (a grid shared by both budgets must reach 512)."""

    n_params: float = 1e8
    unique_tokens: tuple[int, ...] = (1_000_000_000,)
    epochs: tuple[float, ...] = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    pool_seeds: int = 8
    pool_half_octaves: bool = True
    laws: dict[str, LawParams] = field(
        default_factory=lambda: {"ar": MUENNIGHOFF_2023, "dlm": DLM_EXAMPLE}
    )
    seed_noise: float = 0.005  # relative seed-to-seed spread of a final loss
    eval_noise: float = 0.001  # relative evaluation noise, reported as the SE

    def grid(self) -> list[Candidate]:
        """The comparator: the full grid's runs (a subset of ``pool``, same keys)."""
        return self._runs(self.epochs, self.seeds)

    def pool(self) -> list[Candidate]:
        """What the adaptive sweep chooses from (the grid's runs among them)."""
        epochs = half_octaves(self.epochs) if self.pool_half_octaves else self.epochs
        seeds = tuple(range(max(self.pool_seeds, max(self.seeds) + 1)))
        return self._runs(epochs, seeds)

    def grid_flops(self) -> float:
        return float(sum(c.flops for c in self.grid()))

    def _runs(self, epochs: tuple[float, ...], seeds: tuple[int, ...]) -> list[Candidate]:
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
            for e in epochs
            for s in seeds
        ]

    def truth(self, unique_tokens: int) -> float:
        """The planted laws' crossover, in epochs."""
        d = law_crossover_tokens(self.laws["ar"], self.laws["dlm"], self.n_params, unique_tokens)
        return d / unique_tokens

    def draw(self, runs: list[Candidate], rng: np.random.Generator) -> pd.DataFrame:
        """Final losses of ``runs`` (rows in the shape of ``adaptive_loop.final_points``, what
        ``run_adaptive``'s observe returns in the flow)."""
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
                    "n_params": self.n_params,
                    "tokens": tokens,
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


def full_grid(study: PlantedStudy, cfg: AdaptiveConfig, seed: int) -> dict[Group, Interval]:
    """One draw of the comparator design (every run of the grid): its intervals."""
    sweep = SimulatedSweep(study, np.random.default_rng(seed))
    cands = study.grid()
    sweep.run(cands)
    groups = sorted({c.group for c in cands})
    return group_intervals(sweep.observe(), groups, cfg)


def grid_widths(study: PlantedStudy, cfg: AdaptiveConfig, seeds: range) -> list[float]:
    """The comparator's widest relative width (hi/lo - 1 over groups), one per independent
    draw: its median is the full grid's expected width, the target an adaptive sweep must
    reach (one draw's width varies several-fold, so one draw is no yardstick)."""
    return [max(iv.rel_width for iv in full_grid(study, cfg, s).values()) for s in seeds]


def adaptive(study: PlantedStudy, cfg: AdaptiveConfig, seed: int) -> AdaptiveResult:
    """The adaptive loop on ``study``'s pool with the planted-law dispatch."""
    sweep = SimulatedSweep(study, np.random.default_rng(seed))
    return run_adaptive(study.pool(), sweep.run, sweep.observe, cfg)
