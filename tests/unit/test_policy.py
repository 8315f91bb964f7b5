"""The Agent policy (agentry_common.policy): one test per rule, the defaults, and loading."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common.policy import (
    LABEL_PROVIDER_KEYS,
    LABEL_REFERABLE,
    POLICY_FILE_ENV,
    AgentPolicy,
    Rule,
    Violation,
    load_policy,
    parse_quantity,
    priority_violations,
    referenced_secrets,
    violations,
)

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {"instructions": "Summarise the news.", "model": {"name": "claude-sonnet-4-6"}}
OPTED_IN = {LABEL_REFERABLE: "true"}


def check(
    policy: AgentPolicy | None = None, labels: dict[str, Any] | None = None, **spec: Any
) -> list[Violation]:
    return violations({**BASE, **spec}, policy or AgentPolicy(), labels or {})


def rules(found: list[Violation]) -> list[tuple[str, str]]:
    return [(v.rule, v.field) for v in found]


def secret(name: str, env: str = "TOKEN") -> dict[str, Any]:
    return {"env": env, "secretKeyRef": {"name": name, "key": "k"}}


def test_a_plain_agent_passes_the_defaults() -> None:
    assert check() == []
    assert check(tools=["shell", "python", "files", "http"], timeoutSeconds=3600, retries=3) == []


def test_tools_outside_the_allow_list_are_refused() -> None:
    policy = AgentPolicy(allowed_tools=["files"])  # type: ignore[list-item]
    found = check(policy, tools=["files", "shell"])
    assert rules(found) == [(Rule.TOOL, "spec.tools[1]")]
    assert "shell" in found[0].message


def test_a_secret_must_opt_in_with_its_label() -> None:
    spec = {"secrets": [secret("search-key")]}
    missing = check(**spec)
    assert rules(missing) == [(Rule.SECRET_NOT_REFERABLE, "spec.secrets[0].secretKeyRef.name")]
    assert "does not exist" in missing[0].message
    unlabelled = check(labels={"search-key": {"team": "x"}}, **spec)
    assert rules(unlabelled) == [(Rule.SECRET_NOT_REFERABLE, "spec.secrets[0].secretKeyRef.name")]
    assert LABEL_REFERABLE in unlabelled[0].message
    assert check(labels={"search-key": {LABEL_REFERABLE: "false"}}, **spec) != []
    assert check(labels={"search-key": OPTED_IN}, **spec) == []


def test_run_token_and_provider_key_secrets_are_never_referable() -> None:
    run_token = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_EXECUTION: "run1", LABEL_REFERABLE: "true"}
    provider = {LABEL_PROVIDER_KEYS: "true", LABEL_REFERABLE: "true"}
    found = check(
        labels={"run1-abc-token": run_token, "keys": provider},
        secrets=[secret("run1-abc-token"), secret("keys", "K2")],
    )
    assert rules(found) == [
        (Rule.SECRET_FORBIDDEN, "spec.secrets[0].secretKeyRef.name"),
        (Rule.SECRET_FORBIDDEN, "spec.secrets[1].secretKeyRef.name"),
    ]
    by_name = AgentPolicy.model_validate({"secrets": {"neverReferableNames": ["llm-keys"]}})
    found = check(by_name, labels={"llm-keys": OPTED_IN}, secrets=[secret("llm-keys")])
    assert rules(found) == [(Rule.SECRET_FORBIDDEN, "spec.secrets[0].secretKeyRef.name")]


def test_unchecked_envs_skip_the_opt_in_but_never_the_forbidden_secrets() -> None:
    policy = AgentPolicy.model_validate({"secrets": {"neverReferableNames": ["llm-keys"]}})
    spec = {**BASE, "secrets": [secret("other", "ANTHROPIC_API_KEY")]}
    assert violations(spec, policy, {}, unchecked_secret_envs=frozenset({"ANTHROPIC_API_KEY"})) == []
    spec = {**BASE, "secrets": [secret("llm-keys", "ANTHROPIC_API_KEY")]}
    found = violations(spec, policy, {}, unchecked_secret_envs=frozenset({"ANTHROPIC_API_KEY"}))
    assert rules(found) == [(Rule.SECRET_FORBIDDEN, "spec.secrets[0].secretKeyRef.name")]


def test_secret_manager_references_are_not_the_policys_business() -> None:
    assert check(secrets=[{"env": "K", "secretManager": "projects/p/secrets/s"}]) == []
    assert referenced_secrets({**BASE, "secrets": [secret("b"), secret("a", "X"), secret("a", "Y")]}) == [
        "a",
        "b",
    ]


def test_resources_above_the_maxima_or_unlisted_are_refused() -> None:
    found = check(
        resources={
            "requests": {"cpu": "500m", "memory": "5Gi"},
            "limits": {"cpu": "3", "nvidia.com/gpu": "1"},
        }
    )
    assert rules(found) == [
        (Rule.RESOURCES, "spec.resources.requests.memory"),
        (Rule.RESOURCES, "spec.resources.limits.cpu"),
        (Rule.RESOURCES, "spec.resources.limits.nvidia.com/gpu"),
    ]
    assert check(resources={"limits": {"cpu": "2000m", "memory": "4096Mi"}}) == []
    assert rules(check(resources={"limits": {"cpu": "lots"}})) == [
        (Rule.RESOURCES, "spec.resources.limits.cpu")
    ]


def test_timeout_retries_and_history_limits_have_maxima() -> None:
    found = check(
        timeoutSeconds=7200,
        retries=5,
        historyLimits={"succeeded": 500, "failed": 5},
        policy=AgentPolicy(max_history_limit=100),
    )
    assert rules(found) == [
        (Rule.TIMEOUT, "spec.timeoutSeconds"),
        (Rule.RETRIES, "spec.retries"),
        (Rule.HISTORY, "spec.historyLimits.succeeded"),
    ]
    assert rules(check(historyLimits={"succeeded": 101})) == [(Rule.HISTORY, "spec.historyLimits.succeeded")]
    wide = AgentPolicy(max_timeout_seconds=86400, max_retries=10, max_history_limit=1000)
    assert check(wide, timeoutSeconds=7200, retries=5, historyLimits={"succeeded": 500}) == []


def test_a_kept_workspace_has_a_largest_size() -> None:
    assert rules(check(workspace={"persistent": True, "size": "20Gi"})) == [
        (Rule.WORKSPACE_SIZE, "spec.workspace.size")
    ]
    assert check(workspace={"persistent": True, "size": "10Gi"}) == []
    assert check(workspace={"persistent": False, "size": "50Gi"}) == []  # no claim, nothing kept
    wide = AgentPolicy.model_validate({"maxWorkspaceSize": "1Ti"})
    assert check(wide, workspace={"persistent": True, "size": "500Gi"}) == []
    with pytest.raises(ValidationError):
        AgentPolicy.model_validate({"maxWorkspaceSize": "lots"})


def test_priority_range() -> None:
    assert rules(check(priority=8)) == [(Rule.PRIORITY, "spec.priority")]
    assert check(priority=7) == [] and check(priority=0) == []
    narrow = AgentPolicy.model_validate({"priority": {"min": 2, "max": 5}})
    assert rules(check(narrow, priority=1)) == [(Rule.PRIORITY, "spec.priority")]
    assert priority_violations(None, narrow, ("spec", "priority")) == []
    assert rules(priority_violations(9, AgentPolicy(), ("spec", "priority"))) == [
        (Rule.PRIORITY, "spec.priority")
    ]
    with pytest.raises(ValidationError):
        AgentPolicy.model_validate({"priority": {"min": 6, "max": 5}})


def test_schedule_backends() -> None:
    cloud = {"cron": "0 * * * *", "backend": "CloudScheduler"}
    # By default CronJob only: Cloud Scheduler jobs live in the installation's project (admins widen).
    assert rules(check(schedule=cloud)) == [(Rule.SCHEDULE_BACKEND, "spec.schedule.backend")]
    assert check(schedule={"cron": "0 * * * *"}) == []
    both = AgentPolicy.model_validate({"allowedScheduleBackends": ["CronJob", "CloudScheduler"]})
    assert check(both, schedule=cloud) == []


def test_models_allow_list_per_provider() -> None:
    policy = AgentPolicy.model_validate({"allowedModels": ["anthropic/claude-*", "openai/gpt-4.1-mini"]})
    model = {"name": "claude-sonnet-4-6", "fallbacks": [{"provider": "openai", "name": "gpt-4.1"}]}
    assert rules(check(policy, model=model)) == [(Rule.MODEL, "spec.model.fallbacks[0].name")]
    assert check(policy, model={"provider": "openai", "name": "gpt-4.1-mini"}) == []
    assert rules(check(policy, model={"provider": "openai", "name": "claude-x"})) == [
        (Rule.MODEL, "spec.model.name")
    ]
    spec_without_model = {"instructions": "x"}
    assert violations(spec_without_model, policy, {}) == []  # the installation default: the admin's choice
    with pytest.raises(ValidationError):
        AgentPolicy.model_validate({"allowedModels": ["claude-*"]})


def test_model_base_urls() -> None:
    model = {
        "name": "m",
        "baseURL": "http://evil",
        "fallbacks": [{"name": "n", "baseURL": "https://llm.corp/v1"}],
    }
    found = check(model=model)
    assert rules(found) == [
        (Rule.BASE_URL, "spec.model.baseURL"),
        (Rule.BASE_URL, "spec.model.fallbacks[0].baseURL"),
    ]
    policy = AgentPolicy.model_validate({"allowedBaseURLs": ["https://llm.corp/", "http://evil"]})
    assert check(policy, model=model) == []
    assert rules(check(policy, model={"name": "m", "baseURL": "https://llm.corpx/v1"})) == [
        (Rule.BASE_URL, "spec.model.baseURL")
    ]


def test_a_violation_reads_as_field_message_and_rule() -> None:
    (v,) = check(timeoutSeconds=7200)
    assert (
        str(v)
        == "spec.timeoutSeconds: 7200 s is more than the 3600 s allowed (policy rule maxTimeoutSeconds)"
    )


def test_quantities() -> None:
    assert parse_quantity("100m") == Decimal("0.1")
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity("1.5") == Decimal("1.5")
    assert parse_quantity("2M") == 2_000_000
    with pytest.raises(ValueError):
        parse_quantity("1 GB")
    with pytest.raises(ValidationError):
        AgentPolicy(max_resources={"cpu": "two"})


def test_load_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_FILE_ENV, raising=False)
    assert load_policy() == AgentPolicy()
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"maxTimeoutSeconds": 600, "allowedBaseURLs": ["http://x"]}))
    monkeypatch.setenv(POLICY_FILE_ENV, str(path))
    loaded = load_policy()
    assert loaded.max_timeout_seconds == 600 and loaded.allowed_base_urls == ["http://x"]
    assert loaded.max_retries == AgentPolicy().max_retries
    yml = tmp_path / "policy.yaml"
    yml.write_text("maxRetries: 1\npriority: {max: 5}\n")
    assert load_policy(yml).priority.max == 5
    path.write_text(json.dumps({"maxTimeout": 600}))  # a typo stops the component, not silently ignored
    with pytest.raises(ValidationError):
        load_policy()


def test_mcp_servers_remote_urls_and_stdio() -> None:
    remote = {"name": "gh", "url": "https://mcp.example.com/mcp", "tools": ["*"]}
    plain = {"name": "local", "url": "http://mcp.example.com/mcp", "tools": ["*"]}
    stdio = {"name": "everything", "command": ["mcp-server-everything"], "tools": ["echo"]}
    assert check(mcpServers=[remote, stdio]) == []
    # https only by default: an Agent's secrets may travel in the headers.
    assert rules(check(mcpServers=[remote, plain])) == [(Rule.MCP_URL, "spec.mcpServers[1].url")]
    narrow = AgentPolicy(allowedMCPServerURLs=["https://mcp.example.com/*"], allowedTools=["files"])
    found = check(narrow, mcpServers=[{**remote, "url": "https://evil.example.net/mcp"}, stdio])
    assert rules(found) == [
        (Rule.MCP_URL, "spec.mcpServers[0].url"),
        (Rule.MCP_STDIO, "spec.mcpServers[1].command"),
    ]
    assert "evil.example.net" in found[0].message and "shell" in found[1].message


def test_mcp_secrets_are_spec_secrets_with_their_opt_in() -> None:
    server = {
        "name": "gh",
        "url": "https://mcp.example.com/mcp",
        "headers": [{"name": "Authorization", "secretEnv": "TOKEN", "prefix": "Bearer "}],
        "tools": ["*"],
    }
    # The header names a spec.secrets entry, so that Secret's opt-in label decides.
    assert rules(check(secrets=[secret("gh-token")], mcpServers=[server])) == [
        (Rule.SECRET_NOT_REFERABLE, "spec.secrets[0].secretKeyRef.name")
    ]
    opted_in = {"gh-token": OPTED_IN}
    assert check(None, opted_in, secrets=[secret("gh-token")], mcpServers=[server]) == []
    # A secretEnv that is no spec.secrets entry is refused by the model (the CRD's CEL rule too).
    with pytest.raises(ValidationError, match=r"secretEnv TOKEN is not a spec\.secrets env"):
        check(mcpServers=[server])
