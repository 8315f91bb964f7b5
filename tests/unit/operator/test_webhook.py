"""The webhook's pure rules (agentry_operator.webhook), the run container's default CPU limit, and the local
webhook CA's lifetime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentry_common import constants as c
from agentry_common.policy import LABEL_REFERABLE, AgentPolicy
from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings
from agentry_operator.webhook import agent_errors, execution_errors, owner_label_errors, referenced

pytestmark = pytest.mark.unit

API = "system:serviceaccount:agentry:agentry-api"
CONFIG = Settings(owner_label_writers=[API], owner_label_trust_masters=True)
SPEC: dict[str, Any] = {"instructions": "x", "model": {"name": "claude-sonnet-4-6"}}
MALLORY = {"username": "mallory", "groups": ["system:authenticated"]}
ADMIN = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}


def agent(spec: dict[str, Any] | None = None, owner: str | None = None) -> dict[str, Any]:
    labels = {c.LABEL_OWNER: owner} if owner else {}
    return {"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "spec": spec or SPEC}


def test_only_the_api_sets_or_changes_the_owner_label() -> None:
    assert owner_label_errors("Agent", agent(owner="u1"), None, {"username": API}, CONFIG) == []
    (error,) = owner_label_errors("Agent", agent(owner="u1"), None, MALLORY, CONFIG)
    assert error.startswith(f"metadata.labels.{c.LABEL_OWNER}:") and "mallory" in error
    # Changing or removing it is refused too; leaving it as it is is not.
    assert owner_label_errors("Execution", agent(owner="u2"), agent(owner="u1"), MALLORY, CONFIG)
    assert owner_label_errors("Execution", agent(), agent(owner="u1"), MALLORY, CONFIG)
    assert owner_label_errors("Execution", agent(owner="u1"), agent(owner="u1"), MALLORY, CONFIG) == []
    assert owner_label_errors("Agent", agent(), None, MALLORY, CONFIG) == []
    # Cluster administrators can impersonate the API anyway; unless told not to trust them.
    assert owner_label_errors("Agent", agent(owner="u1"), None, ADMIN, CONFIG) == []
    strict = Settings(owner_label_writers=[API], owner_label_trust_masters=False)
    assert owner_label_errors("Agent", agent(owner="u1"), None, ADMIN, strict)


def test_agent_policy_applies_to_new_and_changed_specs_only() -> None:
    policy = AgentPolicy()
    bad = {**SPEC, "timeoutSeconds": 7200}
    (error,) = agent_errors(agent(bad), None, CONFIG, policy, {})
    assert "spec.timeoutSeconds" in error and "maxTimeoutSeconds" in error
    assert agent_errors(agent(bad), agent(SPEC), CONFIG, policy, {})
    # An Agent stored before the policy was tightened: metadata-only updates still pass.
    assert agent_errors(agent(bad), agent(bad), CONFIG, policy, {}) == []
    # Spec rules of the operator come first (and alone when the spec does not parse).
    assert (
        "cron"
        in agent_errors(agent({**SPEC, "schedule": {"cron": "61 * * * *"}}), None, CONFIG, policy, {})[0]
    )


def test_secrets_need_the_opt_in_and_governed_provider_keys_skip_it() -> None:
    spec = {**SPEC, "secrets": [{"env": "ANTHROPIC_API_KEY", "secretKeyRef": {"name": "keys", "key": "k"}}]}
    assert referenced(spec) == ["keys"]
    assert "secrets.optIn" in agent_errors(agent(spec), None, CONFIG, AgentPolicy(), {})[0]
    governed = Settings(gateway_url="http://gw:8090")
    assert agent_errors(agent(spec), None, governed, AgentPolicy(), {}) == []
    reserved = AgentPolicy.model_validate({"secrets": {"neverReferableNames": ["keys"]}})
    assert "secrets.neverReferable" in agent_errors(agent(spec), None, governed, reserved, {})[0]
    other = {**SPEC, "secrets": [{"env": "SEARCH", "secretKeyRef": {"name": "s", "key": "k"}}]}
    assert agent_errors(agent(other), None, CONFIG, AgentPolicy(), {"s": {LABEL_REFERABLE: "true"}}) == []


def test_execution_priority_within_the_range() -> None:
    policy = AgentPolicy()
    ex = {"metadata": {}, "spec": {"agentRef": {"name": "a"}, "priority": 9}}
    assert "spec.priority" in execution_errors(ex, None, policy)[0]
    assert execution_errors(ex, ex, policy) == []  # unchanged
    assert execution_errors({"spec": {"agentRef": {"name": "a"}}}, None, policy) == []


def _limits(spec: dict[str, Any], config: Settings) -> dict[str, Any]:
    execution = {
        "metadata": {"name": "r", "namespace": "ns", "uid": "u"},
        "spec": {"agentRef": {"name": "a"}},
    }
    job = build_job(execution, agent(spec), "corr", config)
    return dict(job["spec"]["template"]["spec"]["containers"][0]["resources"])


def test_run_containers_get_a_cpu_limit_by_default() -> None:
    config = Settings()
    assert _limits(SPEC, config)["limits"]["cpu"] == config.default_cpu_limit == "1"
    # A larger request raises the limit to it; the Agent's own limit wins.
    assert _limits({**SPEC, "resources": {"requests": {"cpu": "1500m"}}}, config)["limits"]["cpu"] == "1500m"
    assert _limits({**SPEC, "resources": {"limits": {"cpu": "250m"}}}, config)["limits"]["cpu"] == "250m"
    assert "cpu" not in _limits(SPEC, Settings(default_cpu_limit=""))["limits"]


def test_the_webhooks_own_ca_and_key_are_removed_when_the_operator_exits(tmp_path: Path) -> None:
    """Without cert files (a local run) the operator makes a CA and a serving key of its own: they
    must not outlive the process in the temp directory."""
    code = (
        "from agentry_operator.main import _webhook_server\n"
        "from agentry_operator.settings import Settings\n"
        "server = _webhook_server(Settings())\n"
        "import pathlib, sys; print(pathlib.Path(server.certfile).parent)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    made = Path(done.stdout.strip())
    assert made.parent == tmp_path and made.name.startswith("agentry-webhook-")
    assert not made.exists()
