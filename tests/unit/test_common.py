"""Shared models and naming rules agree with the CRDs and with Kubernetes' limits."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from agentry_common import models, naming
from agentry_common import workflows as wf

pytestmark = pytest.mark.unit

CRDS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def crd_schema(plural: str) -> dict[str, Any]:
    doc = yaml.safe_load((CRDS / f"agentry.dev_{plural}.yaml").read_text())
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside Optional[...] / list[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found:
            return found
    return None


def mismatches(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    if schema.get("type") == "array":
        schema = schema["items"]
    props = schema.get("properties", {})
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    problems = [f"{path}.{k}: in CRD, not in model" for k in props.keys() - fields.keys()]
    problems += [f"{path}.{k}: in model, not in CRD" for k in fields.keys() - props.keys()]
    for key in props.keys() & fields.keys():
        sub = _model_of(fields[key].annotation)
        if sub is not None:
            problems += mismatches(sub, props[key], f"{path}.{key}")
    return problems


@pytest.mark.parametrize(
    ("plural", "spec", "status"),
    [
        ("agents", models.AgentSpec, models.AgentStatus),
        ("executions", models.ExecutionSpec, models.ExecutionStatus),
        ("workflowruns", wf.WorkflowRunSpec, wf.WorkflowRunStatus),
    ],
)
def test_models_match_crd_schema(plural: str, spec: type[BaseModel], status: type[BaseModel]) -> None:
    schema = crd_schema(plural)
    problems = mismatches(spec, schema["properties"]["spec"], "spec")
    problems += mismatches(status, schema["properties"]["status"], "status")
    assert problems == []


def test_workflow_status_model_matches_crd_schema() -> None:
    schema = crd_schema("workflows")
    assert mismatches(wf.WorkflowStatus, schema["properties"]["status"], "status") == []


def _descriptions_missing(schema: dict[str, Any], path: str) -> list[str]:
    missing = []
    for key, sub in schema.get("properties", {}).items():
        where = f"{path}.{key}"
        if key != "metadata" and not sub.get("description"):
            missing.append(where)
        missing += _descriptions_missing(sub, where)
        if "items" in sub:
            missing += _descriptions_missing(sub["items"], where + "[]")
    return missing


@pytest.mark.parametrize("plural", ["agents", "executions"])
def test_every_crd_field_is_described(plural: str) -> None:
    assert _descriptions_missing(crd_schema(plural), plural) == []


def test_secret_pattern_matches_crd_rule() -> None:
    """The API refuses what the CRD refuses: one pattern, checked to be the same in both places."""
    rule = crd_schema("agents")["properties"]["spec"]["properties"]["instructions"][
        "x-kubernetes-validations"
    ][0]["rule"]
    assert models._SECRETISH.pattern.strip("()") in rule
    assert models.looks_like_secret("key sk-ant-api03-abcdefghijklmnopqrstuv")
    assert not models.looks_like_secret("ask the skeptic")


def test_job_name_is_deterministic_bounded_and_uid_dependent() -> None:
    long = "x" * 253
    a = naming.job_name(long, "uid-1")
    assert a == naming.job_name(long, "uid-1")
    assert a != naming.job_name(long, "uid-2")
    assert len(a) <= 63 and DNS_LABEL.match(a)
    assert naming.job_name("weekly", "u").startswith("weekly-")


def test_cronjob_name_leaves_room_for_the_controller_suffix() -> None:
    name = naming.cronjob_name("a" * 200, "uid")
    assert len(name) <= 52 and DNS_LABEL.match(name)


def test_agent_spec_defaults_and_forbidden_extras() -> None:
    spec = models.AgentSpec.model_validate({"instructions": "hi", "model": {"name": "claude-sonnet-4-5"}})
    assert spec.budget.max_turns == 30
    assert spec.wire()["model"] == {
        "provider": "anthropic",
        "name": "claude-sonnet-4-5",
        "fallbacks": [],
    }
    with pytest.raises(ValueError, match="value"):
        models.AgentSpec.model_validate(
            {"instructions": "hi", "model": {"name": "m"}, "secrets": [{"env": "K", "value": "x"}]}
        )


def test_phase_terminality() -> None:
    assert models.Phase.SKIPPED.terminal and not models.Phase.WAITING_APPROVAL.terminal
    assert {
        models.Phase.SUCCEEDED,
        models.Phase.FAILED,
        models.Phase.CANCELLED,
        models.Phase.SKIPPED,
    } == models.TERMINAL_PHASES


def test_crd_reference_doc_is_current() -> None:
    from agentry_testing.crddoc import render

    doc = (CRDS.parents[1] / "docs" / "crd-reference.md").read_text()
    assert doc == render(), "docs/crd-reference.md is stale: run `make crd-docs`"
