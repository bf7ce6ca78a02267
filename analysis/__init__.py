"""Analysis of a study: DuckDB results store, scaling-law fits, AR-vs-DLM crossovers, report.

Names are imported lazily so ``import analysis`` stays cheap (no plotly or scipy until used).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AnalysisError": "analysis.errors",
    "ResultsStore": "analysis.store",
    "IngestStats": "analysis.store",
    "LawParams": "analysis.laws",
    "MUENNIGHOFF_2023": "analysis.laws",
    "data_constrained_loss": "analysis.laws",
    "LawFit": "analysis.fits",
    "fit_data_constrained_law": "analysis.fits",
    "fit_smooth_curve": "analysis.curves",
    "crossovers": "analysis.crossover",
    "locate_crossover": "analysis.crossover",
    "fit_power_law": "analysis.critical_compute",
    "critical_compute_from_laws": "analysis.critical_compute",
    "flag_loss_accuracy_divergence": "analysis.crossover",
    "StudyAnalysis": "analysis.study",
    "analyze_study": "analysis.study",
    "build_figures": "analysis.report",
    "write_report": "analysis.report",
    "crossover_table": "analysis.summary",
    "format_summary": "analysis.summary",
    "SyntheticStudySpec": "analysis.synthetic",
    "write_synthetic_study": "analysis.synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
