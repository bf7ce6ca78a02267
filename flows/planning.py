"""The planner's input, validated at the edge, and the laws it names (a study's, or the prior).

Shared by `flows plan` and the Prefect `plan` flow; imports neither Prefect nor Ray, so a bad
argument is one line before anything heavy starts. Every error names the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

PRIORS = ("published",)


class PlanInputError(ValueError):
    """A planner argument that cannot be used; the message starts with the field's name."""


@dataclass(frozen=True)
class PlanRequest:
    unique_tokens: float
    compute: float
    study: str | None = None
    prior: str | None = None
    confidence: float = 0.95
    home: str | None = None

    def __post_init__(self) -> None:
        for name in ("unique_tokens", "compute"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise PlanInputError(f"{name}: wants a positive number, got {value!r}")
        if not 0 < self.confidence < 1:
            raise PlanInputError(f"confidence: wants a number in (0, 1), got {self.confidence!r}")
        if (self.study is None) == (self.prior is None):
            raise PlanInputError("study/prior: give exactly one (a study name or 'published')")
        if self.prior is not None and self.prior not in PRIORS:
            raise PlanInputError(f"prior: unknown prior {self.prior!r}; choose from {PRIORS}")

    @property
    def label(self) -> str:
        return self.study or f"prior-{self.prior}"


def study_db(study: str, home: str | None) -> Path:
    """The study's results.duckdb under the studies root, or PlanInputError naming the field."""
    from pipeline.settings import get_settings

    root = (Path(home) if home else get_settings().home).resolve()
    if not study or Path(study).name != study or study in (".", ".."):
        raise PlanInputError(f"study: {study!r} is not a study name")
    db = root / study / "results.duckdb"
    if not db.is_file():
        raise PlanInputError(f"study: no study {study!r} under {root} (no results.duckdb there)")
    return db


def load_laws(request: PlanRequest):  # -> analysis.planner.LawSet
    """The LawSet the request names: the published prior, or the study's stored fits."""
    from analysis.planner_laws import laws_from_tables, published_prior
    from analysis.store import ResultsStore

    if request.prior is not None:
        return published_prior()
    db = study_db(request.study, request.home)
    store = ResultsStore(db)
    tables = set(store.query("SELECT table_name FROM duckdb_tables()")["table_name"])
    if "law_fits" not in tables:
        raise PlanInputError(
            f"study: {request.study!r} has no law fits yet (run `flows run report` for it)"
        )
    fits = store.query("SELECT * FROM law_fits")
    draws = store.query("SELECT * FROM law_fit_draws") if "law_fit_draws" in tables else None
    import pandas as pd

    return laws_from_tables(
        fits, draws if draws is not None else pd.DataFrame(), f"study {request.study}"
    )


def plan_command(args) -> int:  # args: the `flows plan` argparse namespace
    """`flows plan`: the plan, the C_crit(U) band around (U, C) and the verdict region; exit 2
    with one line naming the field for bad input."""
    import sys

    from analysis.planner import make_plan
    from analysis.planner_report import band_table, format_plan, region, region_figure, region_text

    try:
        request = PlanRequest(
            args.unique_tokens, args.compute, args.study, args.prior, args.confidence, args.home
        )
        laws = load_laws(request)
    except PlanInputError as err:
        print(f"flows plan: {err}", file=sys.stderr)
        return 2
    plan = make_plan(laws, request.unique_tokens, request.compute, request.confidence)
    print(format_plan(plan))
    if laws.blocked():
        return 0
    u, c = request.unique_tokens, request.compute
    grid, band = region(laws, (u / 30, u * 30), (c / 1e3, c * 1e3), request.confidence, n=9)
    print(f"\nwhere the DLM's best beats AR's ({100 * request.confidence:g}%), around (U, C):")
    print(region_text(grid))
    print("\nC_crit(U), from which the DLM's best beats AR's, with its band:")
    print(band_table(band).to_string(index=False))
    if args.figure:
        fig = region_figure(grid, band, f"AR vs DLM at (U, C): {plan.source}")
        fig.write_html(args.figure, include_plotlyjs=True)
        print(f"figure: {args.figure}")
    return 0
