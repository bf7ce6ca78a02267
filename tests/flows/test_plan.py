"""The Prefect `plan` flow: a described run form, bad input named by its field.

Its answer as the table artifact the UI shows, read back from a real test server, is in
tests/flows/test_artifacts.py (one test server for every artifact test: a start costs seconds)."""

from __future__ import annotations

import pytest

from flows.plan import plan_flow


def test_plan_parameters_have_descriptions_for_the_run_form() -> None:
    from prefect.utilities.callables import parameter_schema

    props = parameter_schema(plan_flow.fn).model_dump()["properties"]
    assert {"unique_tokens", "compute", "study", "prior", "confidence", "home"} == set(props)
    assert all(p.get("description") for p in props.values()), props


def test_plan_flow_rejects_bad_input_naming_the_field() -> None:
    from flows.planning import PlanInputError

    with pytest.raises(PlanInputError, match="^compute: "):
        plan_flow.fn(unique_tokens=1e9, compute=-1.0)
