"""Where a study lives under the home: its runs, its DuckDB, its report and its writer lock.

No Prefect and no Ray: the CLI's dry run and ``flows status`` find a study's files with this alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.spec import RESERVED_NAMES, StudySpec, StudySpecError
from flows.writer import WRITER_LOCK
from formats.run_dir import RUNS_DIR
from pipeline.settings import get_settings


@dataclass(frozen=True)
class StudyPaths:
    home: Path
    study_dir: Path
    runs_root: Path
    db_path: Path
    report_dir: Path

    @classmethod
    def of(cls, spec: StudySpec, home: str | Path | None = None) -> StudyPaths:
        root = Path(home) if home else get_settings().home
        root = root.resolve()
        study_dir = (root / spec.name).resolve()
        # The name pattern already forbids separators and dot-only names; a symlink planted in
        # the home must not lead the study's writes elsewhere either.
        if study_dir.parent != root or spec.name.lower() in RESERVED_NAMES:
            raise StudySpecError(f"name: {spec.name!r} resolves to {study_dir}, outside {root}")
        return cls(
            root,
            study_dir,
            study_dir / RUNS_DIR,
            study_dir / "results.duckdb",
            study_dir / "report",
        )

    @property
    def lock_path(self) -> Path:
        return self.study_dir / WRITER_LOCK
