"""DuckDB schema of the results store: tables filled by ingest, views answering the usual questions.

Documented for users in ``docs/schema.md``. Tables carry no primary-key constraints: idempotency
comes from delete-then-insert per run in one transaction (and de-duplication inside each batch),
which also avoids DuckDB's INSERT OR REPLACE keeping the *first* of duplicate keys in one batch.
"""

from __future__ import annotations

from formats.budget import BudgetManifest
from formats.run_dir import EVALS_SCHEMA, METRICS_SCHEMA, RunResult
from formats.tables import arrow_columns, model_columns

# Base columns of ``runs``: result.json's fields (``formats.RunResult``) and what ingest adds;
# more appear as ingest meets them (``cfg_*`` from config.json, any extra result.json field).
RUN_BASE_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "study": "VARCHAR",
    "run_dir": "VARCHAR",
    **model_columns(RunResult),
    "config_sha256": "VARCHAR",
    # Comma-joined hashes of the study specs that planned this run (the run dir's plan.json).
    "spec_hashes": "VARCHAR",
    "ingested_at": "TIMESTAMP",
}

# The spec the study runs now (one row, or none for a store filled outside a study): analysis
# uses only the runs it planned; runs of older specs stay on disk and in ``runs``.
CURRENT_SPEC_COLUMNS: dict[str, str] = {"spec_hash": "VARCHAR"}

# The run files' own columns (``formats.run_dir``). Evaluation branches (kind, fork_step,
# run_flops) are NULL in files written before them: a NULL kind is a mid-run point unless it is
# the last step of a completed run.
METRIC_COLUMNS: dict[str, str] = arrow_columns(METRICS_SCHEMA)
EVAL_COLUMNS: dict[str, str] = arrow_columns(EVALS_SCHEMA)

# manifest.json's fields (lists and dicts as JSON text) and where it was read from.
BUDGET_BASE_COLUMNS: dict[str, str] = {
    **model_columns(BudgetManifest),
    "manifest_path": "VARCHAR",
}


def create_table_sql(name: str, columns: dict[str, str]) -> str:
    cols = ", ".join(f'"{col}" {typ}' for col, typ in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


# Analysis uses finite evaluations of completed runs of the current spec; everything else is
# counted in ``excluded_evals`` so the report can say how much was dropped and why. A run that
# never finished (still running, or its worker died for good) is no point of any curve.
VIEWS_SQL: list[str] = [
    """
    CREATE OR REPLACE VIEW current_runs AS
    SELECT r.* FROM runs r
    WHERE NOT EXISTS (SELECT 1 FROM current_spec)
       OR list_contains(string_split(coalesce(r.spec_hashes, ''), ','),
                        (SELECT any_value(spec_hash) FROM current_spec))
    """,
    """
    CREATE OR REPLACE VIEW eval_points AS
    SELECT e.*, r.objective, r.model_name, r.n_params, r.unique_tokens, r.budget_id,
           r.epochs AS run_epochs, r.seed
    FROM evals e JOIN current_runs r USING (run_id)
    WHERE r.status = 'completed'
      AND e.val_loss IS NOT NULL AND isfinite(e.val_loss)
    """,
    """
    CREATE OR REPLACE VIEW excluded_evals AS
    SELECT r.run_id, r.status,
           count(e.run_id) FILTER (WHERE r.status IS DISTINCT FROM 'completed') AS from_failed_run,
           count(e.run_id) FILTER (WHERE r.status = 'completed'
               AND (e.val_loss IS NULL OR NOT isfinite(e.val_loss))) AS nonfinite
    FROM current_runs r LEFT JOIN evals e USING (run_id)
    GROUP BY r.run_id, r.status
    """,
    # Runs on disk that the current spec did not plan (an edited spec under the same name).
    """
    CREATE OR REPLACE VIEW other_spec_runs AS
    SELECT * FROM runs WHERE run_id NOT IN (SELECT run_id FROM current_runs)
    """,
    """
    CREATE OR REPLACE VIEW run_final_best AS
    WITH ranked AS (
        SELECT *,
               row_number() OVER (PARTITION BY run_id ORDER BY step DESC) AS rk_last,
               row_number() OVER (PARTITION BY run_id ORDER BY val_loss ASC, step ASC) AS rk_loss,
               row_number() OVER (PARTITION BY run_id
                                  ORDER BY mc_acc DESC NULLS LAST, step ASC) AS rk_acc
        FROM eval_points
    )
    SELECT run_id, any_value(objective) AS objective, any_value(model_name) AS model_name,
           any_value(n_params) AS n_params, any_value(unique_tokens) AS unique_tokens,
           any_value(budget_id) AS budget_id, any_value(run_epochs) AS epochs,
           any_value(seed) AS seed, count(*) AS n_evals,
           max(val_loss) FILTER (WHERE rk_last = 1) AS final_val_loss,
           max(mc_acc) FILTER (WHERE rk_last = 1) AS final_mc_acc,
           max(epoch) FILTER (WHERE rk_last = 1) AS final_epoch,
           max(flops) FILTER (WHERE rk_last = 1) AS final_flops,
           min(val_loss) AS best_val_loss,
           max(epoch) FILTER (WHERE rk_loss = 1) AS best_val_loss_epoch,
           max(mc_acc) AS best_mc_acc,
           max(epoch) FILTER (WHERE rk_acc = 1) AS best_mc_acc_epoch
    FROM ranked GROUP BY run_id
    """,
    """
    CREATE OR REPLACE VIEW ar_dlm_pairs AS
    SELECT a.model_name, a.unique_tokens, a.budget_id, a.epochs, a.seed,
           a.run_id AS ar_run_id, d.run_id AS dlm_run_id,
           a.final_val_loss AS ar_final_val_loss, d.final_val_loss AS dlm_final_val_loss,
           d.final_val_loss - a.final_val_loss AS delta_val_loss,
           a.best_val_loss AS ar_best_val_loss, d.best_val_loss AS dlm_best_val_loss,
           a.final_mc_acc AS ar_final_mc_acc, d.final_mc_acc AS dlm_final_mc_acc,
           d.final_mc_acc - a.final_mc_acc AS delta_mc_acc,
           d.final_val_loss < a.final_val_loss AS dlm_better_loss,
           d.final_mc_acc > a.final_mc_acc AS dlm_better_acc
    FROM run_final_best a JOIN run_final_best d
      ON a.model_name = d.model_name AND a.unique_tokens = d.unique_tokens
     AND a.epochs = d.epochs AND a.seed = d.seed
    WHERE a.objective = 'ar' AND d.objective = 'dlm'
    """,
    # Measured crossover at the granularity of the sweep's epoch settings (seed means): DLM is
    # better from ``dlm_better_from_epochs`` on; AR is better at ``ar_better_until_epochs``.
    """
    CREATE OR REPLACE VIEW crossover_measured AS
    WITH m AS (
        SELECT model_name, unique_tokens, epochs, 'val_loss' AS metric, count(*) AS n_pairs,
               avg(dlm_final_val_loss) < avg(ar_final_val_loss) AS dlm_better
        FROM ar_dlm_pairs WHERE delta_val_loss IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT model_name, unique_tokens, epochs, 'mc_acc' AS metric, count(*) AS n_pairs,
               avg(dlm_final_mc_acc) > avg(ar_final_mc_acc) AS dlm_better
        FROM ar_dlm_pairs WHERE delta_mc_acc IS NOT NULL GROUP BY ALL
    ), g AS (
        SELECT model_name, unique_tokens, metric, count(*) AS n_epoch_settings,
               sum(n_pairs) AS n_pairs, max(epochs) AS max_epochs,
               max(epochs) FILTER (WHERE NOT dlm_better) AS ar_better_until_epochs
        FROM m GROUP BY ALL
    )
    SELECT g.model_name, g.unique_tokens, g.metric, g.n_epoch_settings, g.n_pairs,
           g.ar_better_until_epochs,
           min(m.epochs) FILTER (WHERE m.epochs > coalesce(g.ar_better_until_epochs, -1))
               AS dlm_better_from_epochs,
           CASE WHEN g.ar_better_until_epochs IS NULL THEN 'dlm_ahead_throughout'
                WHEN g.ar_better_until_epochs = g.max_epochs THEN 'no_crossover'
                ELSE 'crossover' END AS status
    FROM g JOIN m USING (model_name, unique_tokens, metric)
    GROUP BY ALL
    ORDER BY g.model_name, g.unique_tokens, g.metric
    """,
]
