"""Workflow admission rules (workflows/graph.py) and step input templates (workflows/template.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_common.policy import AgentPolicy
from agentry_operator.workflows import graph, template

pytestmark = pytest.mark.unit


def step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "agentRef": {"name": "worker"}, "dependsOn": list(deps), **extra}


def test_a_valid_diamond_passes_and_orders_dependencies_first() -> None:
    steps = [step("d", "b", "c"), step("b", "a"), step("c", "a"), step("a")]
    assert graph.spec_errors({"steps": steps}) == []
    order = graph.order(steps)
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")
    assert graph.ancestors(steps)["d"] == {"a", "b", "c"}


def test_a_cycle_is_refused_naming_its_steps_and_field() -> None:
    (error,) = graph.spec_errors({"steps": [step("a"), step("x", "z"), step("y", "x"), step("z", "y")]})
    assert error.startswith("spec.steps[") and ".dependsOn: a dependency cycle " in error
    cycle = error.split("cycle ")[1].split(" -> ")
    assert set(cycle) == {"x", "y", "z"} and cycle[0] == cycle[-1] and "a" not in cycle


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([step("a"), step("a")], 'spec.steps[1].name: step "a" is already spec.steps[0]'),
        ([step("a", "ghost", "b"), step("b")], "spec.steps[0].dependsOn: unknown step(s) ghost"),
        ([step("a"), step("b", when="Failed")], "spec.steps[1].when: Failed is a condition on dependencies"),
        ([step("a", "a")], "spec.steps[0].dependsOn: a step cannot depend on itself"),
    ],
)
def test_names_dependencies_and_when_are_checked(steps: list[dict[str, Any]], expected: str) -> None:
    errors = graph.spec_errors({"steps": steps})
    assert any(e.startswith(expected) for e in errors), errors


def test_templates_may_name_declared_parameters_and_ancestors_only() -> None:
    steps = [
        step("a", input="{{ params.topic }} {{run.name}}"),
        step("b", "a"),
        step("c", "b", input="{{ steps.a.summary }} {{ steps.b.phase }}"),
        step("d", input="{{ steps.a.summary }}"),
        step("e", "a", input="{{ params.nope }} {{ steps.a.outputs.url }} {{ os.system('x') }} {{ x"),
    ]
    errors = graph.spec_errors({"steps": steps, "parameters": [{"name": "topic"}]})
    assert [e.split(":")[0] for e in errors] == ["spec.steps[3].input"] + ["spec.steps[4].input"] * 4
    assert "a is not a dependency of this step" in errors[0]
    joined = " ".join(errors[1:])
    assert "no parameter nope" in joined and "step a declares no output url (its outputs: none)" in joined
    assert "is not params.NAME" in joined and "unmatched" in joined


def test_agents_missing_from_the_namespace_are_named() -> None:
    spec = {"steps": [step("a"), {"name": "b", "agentRef": {"name": "ghost"}}]}
    assert graph.agent_errors(spec, {"worker": True, "ghost": False}) == [
        "spec.steps[1].agentRef.name: no Agent ghost in this namespace"
    ]


def test_step_priorities_stay_in_the_policy_range() -> None:
    (error,) = graph.priority_errors({"steps": [step("a", priority=7), step("b", priority=9)]}, AgentPolicy())
    assert error.startswith("spec.steps[1].priority: priority 9 is outside the allowed 0..7")


def test_run_parameters_fill_defaults_and_refuse_unknown_or_missing() -> None:
    wf = {"metadata": {"name": "wf"}, "spec": {"parameters": [{"name": "a", "default": "1"}, {"name": "b"}]}}
    assert graph.parameter_values(wf, {"b": "2"}) == ({"a": "1", "b": "2"}, [])
    _, errors = graph.parameter_values(wf, {"c": "3"})
    assert errors == [
        "spec.parameters.c: Workflow wf has no parameter c",
        "spec.parameters.b: required by Workflow wf (it has no default)",
    ]


def test_render_replaces_references_and_evaluates_nothing() -> None:
    values = template.Values(
        params={"p": "{{ params.p }}"}, steps={"a": {"summary": "S", "phase": "Succeeded"}}, run="r"
    )
    text = "[{{ params.p }}] {{steps.a.summary}}/{{ steps.a.phase }} {{ steps.b.summary }}{{ run.name }}"
    text += " {{ 1+1 }}"
    # A value is inserted as text, never rendered again; an unknown form stays as written.
    assert template.render(text, values) == "[{{ params.p }}] S/Succeeded r {{ 1+1 }}"


def test_named_outputs_are_declared_by_their_step_and_rendered_from_its_latest_attempt() -> None:
    steps = [
        step("fetch", outputs=["headline", "links"]),
        step("sum", "fetch", input="{{ steps.fetch.outputs.headline }} | {{ steps.fetch.outputs.nope }}"),
    ]
    (error,) = graph.spec_errors({"steps": steps})
    assert error == (
        "spec.steps[1].input: {{ steps.fetch.outputs.nope }}: step fetch declares no output nope "
        "(its outputs: headline, links)"
    )
    values = template.Values(params={}, steps={"fetch": {"outputs.headline": "Fabs {{ x }}"}}, run="r")
    # One the run did not set renders empty.
    assert (
        template.render("{{ steps.fetch.outputs.headline }}/{{ steps.fetch.outputs.links }}", values)
        == "Fabs {{ x }}/"
    )
