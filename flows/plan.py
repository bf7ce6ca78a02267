"""The `plan` flow: the planner's answer at (U, C) as a Prefect run with a table artifact.

Thin over ``flows.planning`` (input validation, the laws) and ``analysis.planner`` (the plan):
one task makes the plan, one publishes it as the table artifact ``plan-<study or prior>`` (one
row per objective: best N, epochs, predicted loss with its interval, the verdict), beside the
terminal's text in the flow log. No retries: everything here is deterministic.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.artifacts import artifact_key
from flows.planning import PlanRequest, load_laws


@task(name="make-plan")
def make_plan_task(request: PlanRequest) -> Any:  # -> analysis.planner.Plan
    from analysis.planner import make_plan

    laws = load_laws(request)
    return make_plan(laws, request.unique_tokens, request.compute, request.confidence)


@task(name="publish-plan")
def publish_plan_task(plan: Any, label: str) -> list[dict[str, Any]]:
    from analysis.planner_report import plan_rows

    rows = plan_rows(plan)
    create_table_artifact(
        rows,
        key=artifact_key("plan", label),
        description=(
            f"AR or DLM at U = {plan.unique_tokens:.3g}, C = {plan.compute:.3g} FLOPs "
            f"({plan.source}); verdict: {plan.verdict}"
        ),
    )
    return rows


@flow(name="plan")
def plan_flow(
    unique_tokens: float,
    compute: float,
    study: str | None = None,
    prior: str | None = "published",
    confidence: float = 0.95,
    home: str | None = None,
) -> dict[str, Any]:
    """Recommend objective, model size and epochs at (U, C), with intervals, or say why not.

    Args:
        unique_tokens: Unique training tokens available (U).
        compute: Training compute in FLOPs (C = 6 N D, the same convention for both objectives).
        study: Name of a study under `home` whose fitted laws to use; leave empty for the prior.
        prior: 'published' (Muennighoff et al. 2023 for AR, Prabhudesai et al. 2025's R_D* for
            the DLM, as stated in analysis/planner_laws.py); ignored when a study is given.
        confidence: Level of the intervals and of the "too close to call" test (0-1).
        home: Studies root (default: CROSSOVER_HOME, else ./studies).
    """
    from analysis.planner_report import format_plan

    request = PlanRequest(
        float(unique_tokens),
        float(compute),
        study or None,
        None if study else prior,
        float(confidence),
        home,
    )
    plan = make_plan_task(request)
    get_run_logger().info("\n%s", format_plan(plan))
    rows = publish_plan_task(plan, request.label)
    return {"verdict": plan.verdict, "text": format_plan(plan), "rows": rows}
