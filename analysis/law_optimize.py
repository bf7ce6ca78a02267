"""Minimising the law objective (``analysis.law_objective``): multi-start, joint refit, profiles.

Every optimisation here is L-BFGS-B over the free parameters with central-difference gradients
computed in one vectorised pass (2p + 1 parameter rows per call), explicit tolerances, and
bounds from ``BOUNDS``. ``fit_point`` reaches the optimum by (1) the best rows of a stage-1 grid
on single-epoch points, (2) a stage-2 grid over (log R_D*, log R_N*), (3) a joint refit of all
free parameters from the best few, and (4) 1-D profiles over log R_D* and log R_N*: if any
profile point beats the current optimum the joint fit restarts from it, so the returned point is
never worse than any point the fit probed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from analysis.law_objective import BOUNDS, NAMES, LawData

_LBFGS = {"maxiter": 3000, "ftol": 1e-13, "gtol": 1e-10}
# Profiles and bootstrap draws only need the objective to well below the likelihood-ratio
# threshold (~1e-6 at 0.3% noise) and the draws' spread.
_LBFGS_PROFILE = {"maxiter": 500, "ftol": 1e-10, "gtol": 1e-8}
# A profile point counts as better than the optimum only beyond rounding of the objective.
_REL_TOL = 1e-9
_STAGE1_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5),
    "alpha": (0.1, 0.25, 0.5, 1.0, 1.5),
    "beta": (0.1, 0.25, 0.5, 1.0, 1.5),
}
_R_GRID = np.log([0.5, 2.0, 5.0, 15.0, 50.0, 200.0, 1000.0, 5000.0, 3e4])
PROFILE_GRID = np.linspace(math.log(0.3), BOUNDS["log_rd"][1], 30)


@dataclass(frozen=True)
class Profile:
    """Objective minimised over the other free parameters at each fixed value of ``name``."""

    name: str
    grid: NDArray[np.float64]  # (g,) values of the parameter (log R*), the optimum's included
    values: NDArray[np.float64]  # (g,) profile objective
    argmins: NDArray[np.float64]  # (g, 7) the full parameter vector at each grid point


@dataclass(frozen=True)
class Problem:
    """Data plus which of ``NAMES`` are free; frozen ones take their value from ``base``."""

    data: LawData
    free: tuple[str, ...]
    base: NDArray[np.float64]  # (7,) full parameter vector

    def full(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Free values (k, p) or (p,) -> full rows (k, 7)."""
        x = np.atleast_2d(x)
        rows = np.repeat(self.base[None, :], len(x), axis=0)
        rows[:, [NAMES.index(n) for n in self.free]] = x
        return rows

    def with_free(self, free: tuple[str, ...], base: NDArray[np.float64]) -> Problem:
        return Problem(self.data, free, np.asarray(base, float))

    def _shift(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Optimiser coordinates: a - alpha c_N and b - beta c_D instead of a and b (c = mean
        log N, mean log D), which removes most of the a/alpha and b/beta correlation that
        otherwise leaves L-BFGS-B crawling along a ridge. x: (k, p) free values."""
        shift = np.zeros_like(x)
        full = self.full(x)
        for name, slope, centre in (
            ("a", "alpha", self.data.log_n.mean()),
            ("b", "beta", self.data.log_d.mean()),
        ):
            if name in self.free:
                shift[:, self.free.index(name)] = full[:, NAMES.index(slope)] * centre
        return shift

    def _from_opt(self, y: NDArray[np.float64]) -> NDArray[np.float64]:
        y = np.atleast_2d(y)
        return y + self._shift(y)  # the slopes are not shifted, so this inverts exactly

    def fun_grad(self, y: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p = len(y)
        h = 1e-6 * np.maximum(1.0, np.abs(y))
        steps = np.vstack([np.zeros(p), np.diag(h), -np.diag(h)])  # (2p + 1, p)
        v = self.data.values(self.full(self._from_opt(y[None, :] + steps)))
        return float(v[0]), (v[1 : p + 1] - v[p + 1 :]) / (2 * h)

    def minimize(
        self, x0: NDArray[np.float64], options: dict[str, float] = _LBFGS
    ) -> tuple[NDArray[np.float64], float]:
        """L-BFGS-B from free values ``x0`` -> (free values, objective). Box bounds hold for
        every parameter except a and b, which move with their centring (still finite)."""
        bounds = [BOUNDS[n] for n in self.free]
        x0 = np.clip(np.asarray(x0, float), [b[0] for b in bounds], [b[1] for b in bounds])
        y0 = x0 - self._shift(x0[None, :])[0]
        y_bounds = [(-200.0, 200.0) if n in ("a", "b") else BOUNDS[n] for n in self.free]
        res = minimize(
            self.fun_grad, y0, jac=True, method="L-BFGS-B", bounds=y_bounds, options=options
        )
        start = self.data.value(self.full(x0))
        # L-BFGS-B can stop on a line-search failure above its start: keep the better point.
        if res.fun <= start:
            return self._from_opt(res.x)[0], float(res.fun)
        return x0, start


def _free_of(problem: Problem, theta: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(theta, float)[[NAMES.index(n) for n in problem.free]]


def _stage1_starts(problem: Problem, single: LawData, k: int) -> list[NDArray[np.float64]]:
    """Best ``k`` grid rows for the parameters of stage 1 on single-epoch points (N' = N)."""
    names = [n for n in ("a", "b", "e", "alpha", "beta") if n in problem.free]
    if not names:
        return [problem.base.copy()]
    stage = Problem(single, tuple(names), problem.base.copy())
    stage.base[[NAMES.index("log_rd"), NAMES.index("log_rn")]] = np.inf
    grid = np.array(list(itertools.product(*(_STAGE1_GRID[n] for n in names))))
    order = np.argsort(single.values(stage.full(grid)))[:k]
    fitted = [stage.minimize(grid[i]) for i in order]
    best = min(fitted, key=lambda r: r[1])[0]
    theta = problem.base.copy()
    theta[[NAMES.index(n) for n in names]] = best
    return [theta]


def _stage2_starts(problem: Problem, theta: NDArray[np.float64], k: int) -> list[np.ndarray]:
    """Best ``k`` points of a (log R_D*, log R_N*) grid with everything else at ``theta``."""
    names = [n for n in ("log_rd", "log_rn") if n in problem.free]
    if not names:
        return [theta]
    grid = np.array(list(itertools.product(_R_GRID, repeat=len(names))))
    rows = np.repeat(theta[None, :], len(grid), axis=0)
    rows[:, [NAMES.index(n) for n in names]] = grid
    values = problem.data.values(rows)
    stage = problem.with_free(tuple(names), theta)
    out = []
    for i in np.argsort(values)[:k]:
        x, _ = stage.minimize(grid[i])
        out.append(stage.full(x)[0])
    return out


def profile(
    problem: Problem, theta: NDArray[np.float64], name: str, grid: NDArray[np.float64]
) -> Profile:
    """min over the other free parameters at each fixed ``name`` value, on ``grid`` plus the
    optimum's own value. Solved outward from the optimum, each from its neighbour's solution.
    """
    centre = theta[NAMES.index(name)]
    grid = np.unique(np.concatenate([grid, centre + np.array([-0.15, -0.05, 0.0, 0.05, 0.15])]))
    grid = np.clip(grid, *BOUNDS[name])
    others = tuple(n for n in problem.free if n != name)
    values = np.empty(len(grid))
    argmins = np.empty((len(grid), len(NAMES)))
    i0 = int(np.argmin(np.abs(grid - theta[NAMES.index(name)])))
    for order in (range(i0, len(grid)), range(i0 - 1, -1, -1)):
        start = theta.copy()
        for i in order:
            start[NAMES.index(name)] = grid[i]
            sub = problem.with_free(others, start)
            x = sub.minimize(_free_of(sub, start), _LBFGS_PROFILE)[0] if others else np.array([])
            start = sub.full(x)[0]
            argmins[i], values[i] = start, problem.data.value(start[None, :])
    return Profile(name, grid, values, argmins)


def _profile_at(problem: Problem, name: str, value: float, start: NDArray[np.float64]) -> float:
    """Profile objective at one value of ``name``, warm-started at the full vector ``start``."""
    point = start.copy()
    point[NAMES.index(name)] = value
    sub = problem.with_free(tuple(n for n in problem.free if n != name), point)
    if sub.free:
        point = sub.full(sub.minimize(_free_of(sub, point), _LBFGS_PROFILE)[0])[0]
    return problem.data.value(point[None, :])


def profile_interval(
    problem: Problem, prof: Profile, threshold: float, steps: int = 8
) -> tuple[float, float]:
    """(lo, hi) in log space where the profile stays <= ``threshold``: the hull of the grid
    points inside, each edge then bisected ``steps`` times between its inside and outside grid
    points (a coarse grid with linear interpolation overstates a curved profile's rise). An
    edge at the grid's end stays open: -inf / +inf."""
    inside = np.nonzero(prof.values <= threshold)[0]
    i, j = int(inside.min()), int(inside.max())

    def bisect(k_in: int, k_out: int) -> float:
        x_in, x_out = prof.grid[k_in], prof.grid[k_out]
        for _ in range(steps):
            mid = 0.5 * (x_in + x_out)
            if _profile_at(problem, prof.name, mid, prof.argmins[k_in]) <= threshold:
                x_in = mid
            else:
                x_out = mid
        return 0.5 * (x_in + x_out)

    lo = -np.inf if i == 0 else bisect(i, i - 1)
    hi = np.inf if j == len(prof.grid) - 1 else bisect(j, j + 1)
    return float(lo), float(hi)


def fit_point(
    problem: Problem, single: LawData | None, *, n_starts: int = 5
) -> tuple[NDArray[np.float64], float, dict[str, Profile]]:
    """The optimum of ``problem`` -> (theta (7,), objective, profiles by parameter name)."""
    starts = _stage1_starts(problem, single, n_starts) if single is not None else [problem.base]
    candidates = []
    for s1 in starts:
        candidates += _stage2_starts(problem, s1, 3)
    best, best_v = _joint_best(problem, candidates)
    profiles: dict[str, Profile] = {}
    for _ in range(3):  # a profile point better than the optimum restarts the joint fit
        profiles = {
            n: profile(problem, best, n, PROFILE_GRID)
            for n in ("log_rd", "log_rn")
            if n in problem.free
        }
        better = [
            (p.values.min(), p.argmins[np.argmin(p.values)])
            for p in profiles.values()
            if p.values.min() < best_v * (1 - _REL_TOL)
        ]
        if not better:
            break
        best, best_v = _joint_best(problem, [min(better, key=lambda t: t[0])[1]])
    for p in profiles.values():  # still beaten after the restarts: take the probed point
        if p.values.min() < best_v:
            best, best_v = p.argmins[np.argmin(p.values)], float(p.values.min())
    return best, best_v, profiles


def _joint_best(problem: Problem, candidates: list[np.ndarray]) -> tuple[np.ndarray, float]:
    results = [problem.minimize(_free_of(problem, c)) for c in candidates]
    x, v = min(results, key=lambda r: r[1])
    return problem.full(x)[0], v


def refit(problem: Problem, theta: NDArray[np.float64]) -> NDArray[np.float64]:
    """One joint fit warm-started at ``theta`` (a bootstrap draw)."""
    x, _ = problem.minimize(_free_of(problem, theta), _LBFGS_PROFILE)
    return problem.full(x)[0]
