"""An Agent's RuntimeClass (spec.runtimeClassName): the model and CRD accept it, the run pod carries it,
and the agent policy can require one (for every run, or for runs that execute code) and limit which."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from agentry_common.conditions import Reason
from agentry_common.models import AgentSpec, Phase
from agentry_common.policy import AgentPolicy, Rule, load_policy, runs_code, violations
from agentry_operator.builders.job import build_job
from agentry_operator.handlers.state import State
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
AGENT: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "coder", "namespace": "ns", "uid": "a-uid"},
    "spec": {"instructions": "x", "model": {"name": "m"}, "tools": ["files"]},
}
EXECUTION: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "run", "namespace": "ns", "uid": "e-uid"},
    "spec": {"agentRef": {"name": "coder"}, "trigger": "Manual"},
}


def agent(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(AGENT)
    doc["spec"].update(spec)
    return doc


def policy(require: str = "never", allowed: list[str] | None = None) -> AgentPolicy:
    return AgentPolicy.model_validate({"runtimeClass": {"require": require, "allowed": allowed or []}})


def found(spec: dict[str, Any], rules: AgentPolicy) -> list[tuple[str, str]]:
    return [(v.rule, v.field) for v in violations(spec, rules, {})]


def test_the_run_pod_carries_the_agents_runtime_class_and_nothing_else_changes() -> None:
    plain = build_job(EXECUTION, agent(), "corr", Settings())["spec"]["template"]["spec"]
    sandboxed = build_job(EXECUTION, agent(runtimeClassName="gvisor"), "corr", Settings())
    pod = sandboxed["spec"]["template"]["spec"]
    assert "runtimeClassName" not in plain
    assert pod.pop("runtimeClassName") == "gvisor"
    assert pod == plain  # the same restricted pod: security context, volumes, bounds


@pytest.mark.parametrize("name", ["gvisor", "kata-qemu", "sandbox.example.com"])
def test_runtime_class_names_are_dns_subdomains(name: str) -> None:
    assert (
        AgentSpec.model_validate({"instructions": "x", "runtimeClassName": name}).runtime_class_name == name
    )


@pytest.mark.parametrize("name", ["", "gVisor", "-gvisor", "g visor", "a" * 254])
def test_a_name_no_runtime_class_can_have_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="runtimeClassName"):
        AgentSpec.model_validate({"instructions": "x", "runtimeClassName": name})


def test_the_crd_has_the_models_rule() -> None:
    crd = yaml.safe_load((REPO / "manifests/crds/agentry.dev_agents.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    field = spec["runtimeClassName"]
    model = AgentSpec.model_fields["runtime_class_name"].metadata
    assert field["type"] == "string" and field["maxLength"] == 253
    assert any(getattr(m, "pattern", None) == field["pattern"] for m in model)


def test_by_default_no_runtime_class_is_required_and_any_is_allowed() -> None:
    assert found({**AGENT["spec"], "tools": ["shell"]}, AgentPolicy()) == []
    assert found({**AGENT["spec"], "runtimeClassName": "kata"}, AgentPolicy()) == []


def test_required_for_every_run() -> None:
    rules = policy("always")
    assert found(AGENT["spec"], rules) == [(Rule.RUNTIME_CLASS_REQUIRED, "spec.runtimeClassName")]
    assert found({**AGENT["spec"], "runtimeClassName": "gvisor"}, rules) == []


@pytest.mark.parametrize(
    ("extra", "runs"),
    [
        ({"tools": ["files", "http"]}, False),
        ({"tools": ["shell"]}, True),
        ({"tools": ["python"]}, True),
        (
            {"mcpServers": [{"name": "fs", "command": ["mcp-fs"], "tools": ["read"]}]},
            True,
        ),  # stdio: a program, like shell
        ({"mcpServers": [{"name": "web", "url": "https://mcp.example.com/", "tools": ["search"]}]}, False),
    ],
)
def test_required_for_runs_that_execute_code(extra: dict[str, Any], runs: bool) -> None:
    spec = {**AGENT["spec"], **extra}
    assert runs_code(AgentSpec.model_validate(spec)) is runs
    expected = [(Rule.RUNTIME_CLASS_REQUIRED, "spec.runtimeClassName")] if runs else []
    assert found(spec, policy("codeTools")) == expected
    assert found({**spec, "runtimeClassName": "gvisor"}, policy("codeTools")) == []


def test_only_the_allowed_classes() -> None:
    rules = policy("always", ["gvisor"])
    (violation,) = violations({**AGENT["spec"], "runtimeClassName": "kata"}, rules, {})
    assert (violation.rule, violation.field) == (Rule.RUNTIME_CLASS_ALLOWED, "spec.runtimeClassName")
    assert "kata" in violation.message and "gvisor" in violation.message
    assert found({**AGENT["spec"], "runtimeClassName": "gvisor"}, rules) == []
    (missing,) = violations(AGENT["spec"], rules, {})
    assert "gvisor" in missing.message  # the refusal says what to set


def test_the_policy_file_and_its_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"runtimeClass": {"require": "codeTools", "allowed": ["gvisor"]}}')
    loaded = load_policy(path).runtime_class
    assert (loaded.require.value, loaded.allowed) == ("codeTools", ["gvisor"])
    path.write_text('{"runtimeClass": {"require": "sometimes"}}')
    with pytest.raises(ValidationError, match="require"):
        load_policy(path)


def test_a_run_of_an_agent_written_before_the_policy_required_one_is_refused(tmp_path: Path) -> None:
    """The operator's gate applies the policy again at the start: the run ends Failed, naming the field."""
    path = tmp_path / "policy.json"
    path.write_text('{"runtimeClass": {"require": "codeTools"}}')
    config = Settings(policy_file=str(path))
    coder = agent(tools=["shell"])
    held = State().gate.policy_held(config, EXECUTION, coder)
    assert held is not None and (held.phase, held.reason) == (Phase.FAILED, Reason.POLICY_VIOLATION)
    assert "spec.runtimeClassName" in held.message and "runtimeClass.require" in held.message
    assert (
        State().gate.policy_held(config, EXECUTION, agent(tools=["shell"], runtimeClassName="gvisor")) is None
    )
