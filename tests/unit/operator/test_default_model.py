"""The installation's default model: used by Agents without spec.model, never over an explicit one."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_common.models import DEFAULT_MODEL, AgentSpec, parse_model
from agentry_operator.builders.agent_status import spec_errors
from agentry_operator.builders.governance import admission_request
from agentry_operator.builders.job import ANNOTATION_AGENT, build_job, effective_spec
from agentry_operator.builders.model import model_label, with_effective_model
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

AGENT: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "minimal", "namespace": "ns", "uid": "a-uid"},
    "spec": {"instructions": "Say hello."},
}
EXECUTION = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "run", "namespace": "ns", "uid": "e-uid"},
    "spec": {"agentRef": {"name": "minimal"}, "trigger": "Manual"},
}


def run_agent_doc(job: dict[str, Any]) -> dict[str, Any]:
    """The agent.json the runtime reads (the pod annotation behind the downward-API file)."""
    doc: dict[str, Any] = json.loads(job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_AGENT])
    return doc


def test_the_operator_default_is_the_shared_one_and_parses() -> None:
    config = Settings()
    assert config.default_model == DEFAULT_MODEL == "anthropic/claude-sonnet-4-6"
    spec = config.default_model_spec
    assert spec is not None and (spec.provider.value, spec.name) == ("anthropic", "claude-sonnet-4-6")


def test_job_of_an_agent_without_model_runs_on_the_default() -> None:
    before = copy.deepcopy(AGENT)
    job = build_job(EXECUTION, AGENT, "corr", Settings(default_model="openai/gpt-4.1-mini"))
    assert run_agent_doc(job)["spec"]["model"] == {"provider": "openai", "name": "gpt-4.1-mini"}
    assert before == AGENT  # the watched object is not changed
    job = build_job(EXECUTION, AGENT, "corr", Settings())
    assert run_agent_doc(job)["spec"]["model"] == {"provider": "anthropic", "name": "claude-sonnet-4-6"}


def test_an_explicit_model_wins_over_the_default() -> None:
    model = {"provider": "anthropic", "name": "claude-haiku-4-5", "fallbacks": [{"name": "claude-opus-4-6"}]}
    agent = {**AGENT, "spec": {**AGENT["spec"], "model": model}}
    job = build_job(EXECUTION, agent, "corr", Settings(default_model="openai/gpt-5"))
    assert run_agent_doc(job)["spec"]["model"] == model
    assert model_label(agent["spec"], parse_model("openai/gpt-5")) == "anthropic/claude-haiku-4-5"
    assert model_label({"model": {"name": "claude-opus-4-6"}}, None) == "anthropic/claude-opus-4-6"


def test_status_label_and_admission_name_the_default() -> None:
    config = Settings(default_model="claude-haiku-4-5")  # a bare name: anthropic
    assert model_label(AGENT["spec"], config.default_model_spec) == "anthropic/claude-haiku-4-5"
    body = admission_request(EXECUTION, AGENT, config, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert body["model"] == "claude-haiku-4-5"


def test_without_a_default_an_agent_must_name_its_model() -> None:
    config = Settings(default_model="")
    assert config.default_model_spec is None
    assert model_label(AGENT["spec"], None) is None
    assert with_effective_model(AGENT, None) is AGENT
    (error,) = spec_errors(AGENT["spec"], None, None)
    assert "spec.model is not set" in error and "operator.defaultModel" in error
    assert spec_errors(AGENT["spec"], None, config.default_model_spec or parse_model(DEFAULT_MODEL)) == []
    assert spec_errors({**AGENT["spec"], "model": {"name": "m"}}, None, None) == []


def test_the_gateway_check_skips_an_absent_model() -> None:
    gateway = "http://gw.agentry.svc:8090"
    assert spec_errors(AGENT["spec"], gateway, parse_model(DEFAULT_MODEL)) == []
    bypass = {**AGENT["spec"], "model": {"name": "m", "baseURL": "https://api.example.com"}}
    assert "bypasses the LLM gateway" in "; ".join(spec_errors(bypass, gateway, parse_model(DEFAULT_MODEL)))


@pytest.mark.parametrize("value", ["acme/x", "anthropic/", "openai/" + "x" * 129])
def test_a_malformed_default_stops_the_operator(value: str) -> None:
    with pytest.raises(ValidationError, match=r"model '"):
        Settings(default_model=value)


def test_env_sets_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRY_DEFAULT_MODEL", " openai/gpt-5-mini ")
    assert Settings().default_model == "openai/gpt-5-mini"
    spec = AgentSpec.model_validate(AGENT["spec"])
    assert spec.model is None and "model" not in spec.wire()


def test_the_parsed_spec_is_shared_per_generation_and_default_model() -> None:
    agent = copy.deepcopy(AGENT)
    agent["metadata"]["generation"] = 1
    config = Settings()
    first = effective_spec(agent, config)
    assert effective_spec(copy.deepcopy(agent), config) is first  # another run of the same spec
    assert first.model is not None and first.model.name == config.default_model_spec.name  # type: ignore[union-attr]

    edited = copy.deepcopy(agent)
    edited["metadata"]["generation"] = 2
    edited["spec"]["model"] = {"name": "gpt-4.1"}
    assert effective_spec(edited, config).model.name == "gpt-4.1"  # type: ignore[union-attr]

    other = Settings(default_model="gpt-4.1-mini")
    assert effective_spec(agent, other).model.name == "gpt-4.1-mini"  # type: ignore[union-attr]

    unnamed = copy.deepcopy(agent)  # no uid (a sample Job): parsed each time, never shared
    del unnamed["metadata"]["uid"]
    assert effective_spec(unnamed, config) is not effective_spec(unnamed, config)
