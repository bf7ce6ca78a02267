"""The Prefect `plan` flow on a test server: its answer as the table artifact the UI shows."""

from __future__ import annotations

import pytest

from flows.plan import plan_flow


def test_plan_parameters_have_descriptions_for_the_run_form() -> None:
    from prefect.utilities.callables import parameter_schema

    props = parameter_schema(plan_flow.fn).model_dump()["properties"]
    assert {"unique_tokens", "compute", "study", "prior", "confidence", "home"} == set(props)
    assert all(p.get("description") for p in props.values()), props


def test_plan_flow_publishes_the_plan_as_a_table_artifact() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        state = plan_flow(unique_tokens=1e9, compute=1e19, return_state=True)
        assert state.is_completed(), state.message
        result = state.result()
        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["plan-prior-published"]))
            )
    assert result["verdict"] == "ar" and "recommendation: train AR" in result["text"]
    assert artifact.type == "table" and "verdict: ar" in artifact.description
    rows = result["rows"]
    assert [r["objective"] for r in rows] == ["ar", "dlm"]
    assert all(r["verdict"] == "ar" and r["95% interval"].startswith("[") for r in rows)
    assert str(artifact.flow_run_id) == str(state.state_details.flow_run_id)


def test_plan_flow_rejects_bad_input_naming_the_field() -> None:
    from flows.planning import PlanInputError

    with pytest.raises(PlanInputError, match="^compute: "):
        plan_flow.fn(unique_tokens=1e9, compute=-1.0)
