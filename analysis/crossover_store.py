"""The crossover table in DuckDB: the one copy the terminal, the report and SQL all read.

``current_crossovers`` returns the store's ``crossovers`` table when it was computed from the
same evaluations with the same bootstrap settings, else computes it (``analysis.crossover``),
replaces the table and returns it as read back. So the terminal summary, the report's table and
a user's ``SELECT ... FROM crossovers`` show the same rows, intervals and P(crossover), drawn
from the same ``n_boot`` bootstrap draws (a column of the table, beside ``bootstrap_seed``).
"""

from __future__ import annotations

import hashlib

import pandas as pd

from analysis.crossover import INTERVAL_METHOD, crossovers
from analysis.errors import AnalysisError
from analysis.store import ResultsStore

# Bootstrap draws behind every crossover interval the tool shows. With 200 draws the 2.5/97.5
# percentiles are the 5th and 195th ordered draw; 100 left only 2 or 3 draws beyond each edge.
N_BOOT = 200
BOOT_SEED = 0
TABLE = "crossovers"
EVALS_SQL = "SELECT * FROM eval_points ORDER BY run_id, step"
# Settings columns added to analysis.crossover's rows; ``evals_sha256`` keys the cached table.
SETTINGS_COLUMNS = ("n_boot", "bootstrap_seed", "evals_sha256")


def evals_fingerprint(evals: pd.DataFrame) -> str:
    """SHA-256 over the evaluations' columns and values (row order included) and the interval
    method's name, so a table an earlier method computed is recomputed, never shown."""
    digest = hashlib.sha256(INTERVAL_METHOD.encode())
    digest.update(",".join(map(str, evals.columns)).encode())
    digest.update(pd.util.hash_pandas_object(evals, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def read_crossovers(store: ResultsStore) -> pd.DataFrame | None:
    """The stored table in the order it was written, or None when the store has none."""
    tables = store.query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?", [TABLE]
    )
    if int(tables["n"].iloc[0]) == 0:
        return None
    return store.query(f"SELECT * FROM {TABLE}")


def _is_current(table: pd.DataFrame | None, sha: str, n_boot: int, seed: int) -> bool:
    if table is None or table.empty or not set(SETTINGS_COLUMNS) <= set(table.columns):
        return False
    return bool(
        (table["evals_sha256"] == sha).all()
        and (table["n_boot"] == n_boot).all()
        and (table["bootstrap_seed"] == seed).all()
    )


def current_crossovers(
    store: ResultsStore,
    evals: pd.DataFrame | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
) -> pd.DataFrame:
    """The crossover table of the store's current evaluations (``EVALS_SQL`` unless given),
    from DuckDB when already computed with these settings, else computed and stored first.
    Raises ``AnalysisError`` (and drops a stale table) when no group is usable."""
    evals = store.query(EVALS_SQL) if evals is None else evals
    sha = evals_fingerprint(evals)
    stored = read_crossovers(store)
    if _is_current(stored, sha, n_boot, seed):
        return stored
    try:
        table = crossovers(evals, n_boot=n_boot, seed=seed)
    except AnalysisError:
        if stored is not None:  # a table of other evaluations must not answer SQL any more
            store.drop_derived_table(TABLE)
        raise
    table = table.assign(n_boot=n_boot, bootstrap_seed=seed, evals_sha256=sha)
    store.replace_derived_table(TABLE, table)
    return read_crossovers(store)
