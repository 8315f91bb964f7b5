"""Attacks through kubectl on the agent policy and the owner label (real API server, real operator and its
validating webhook). A user with RBAC to write Agents and Executions in a namespace (`mallory`) is
refused by the API server, with a message naming the field and the rule; the webhook fails closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.core_v1 import Secret
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from agentry_common import constants
from agentry_common.policy import LABEL_REFERABLE
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

API_SA = "system:serviceaccount:agentry:agentry-api"
MALLORY = "mallory"
PROVIDER_KEYS = "llm-keys"
SPEC: dict[str, Any] = {"instructions": "Summarise the news.", "model": {"name": "claude-sonnet-4-5"}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("policy-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane) as c:
        yield c


@pytest.fixture(scope="module")
def op(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("policy-operator")
    policy = workdir / "policy.json"
    rules = {
        "secrets": {"neverReferableNames": [PROVIDER_KEYS]},
        "runtimeClass": {"require": "codeTools", "allowed": ["gvisor"]},
    }
    policy.write_text(json.dumps(rules))
    proc = start_operator(
        plane,
        workdir,
        AGENTRY_POLICY_FILE=str(policy),
        AGENTRY_OWNER_LABEL_WRITERS=json.dumps([API_SA]),
    )
    yield proc
    proc.proc.stop()


@pytest.fixture
def ns(plane: ControlPlane, client: Client, op: OperatorProcess) -> str:
    """A namespace where mallory and the API's ServiceAccount may write Agents and Executions."""
    name = make_namespace(client, "pol")
    rules = [
        {
            "apiGroups": ["agentry.dev"],
            "resources": ["agents", "executions"],
            "verbs": ["create", "get", "list", "patch", "update"],
        }
    ]
    client.create(Role.from_dict({"metadata": {"name": "writers", "namespace": name}, "rules": rules}))
    subjects = [
        {"kind": "User", "name": MALLORY, "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "ServiceAccount", "name": "agentry-api", "namespace": "agentry"},
    ]
    binding = {
        "metadata": {"name": "writers", "namespace": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writers"},
        "subjects": subjects,
    }
    client.create(RoleBinding.from_dict(binding))
    eventually(
        lambda: kubectl_as(plane, MALLORY, "auth", "can-i", "create", "agents", "-n", name).returncode == 0,
        what="mallory's RBAC",
    )
    return name


def kubectl_as(plane: ControlPlane, user: str, *args: str, input: str | None = None) -> Any:
    return plane.kubectl(f"--as={user}", *args, input=input, check=False)


def apply_as(plane: ControlPlane, user: str, ns: str, manifest: dict[str, Any]) -> Any:
    return kubectl_as(plane, user, "create", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


def agent(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "Agent",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {**SPEC, **spec},
    }


def execution(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": "Execution",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"agentRef": {"name": "ok"}, **spec},
    }


def refused(result: Any, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "denied the request" in result.stderr, result.stderr  # the webhook, not the schema
    return str(result.stderr)


def secret(client: Client, ns: str, name: str, labels: dict[str, str]) -> None:
    client.create(
        Secret.from_dict(
            {"metadata": {"name": name, "namespace": ns, "labels": labels}, "stringData": {"k": "v"}}
        )
    )


def ref(name: str, env: str = "SEARCH_KEY") -> list[dict[str, Any]]:
    return [{"env": env, "secretKeyRef": {"name": name, "key": "k"}}]


def test_kubectl_agents_referencing_forbidden_secrets_are_refused(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    field = "spec.secrets[0].secretKeyRef.name"
    secret(client, ns, "db-password", {"team": "payments"})
    refused(apply_as(plane, MALLORY, ns, agent("a1", secrets=ref("db-password"))), field, "secrets.optIn")
    token = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY, LABEL_REFERABLE: "true"}
    secret(client, ns, "run1-0a1b2c3d-token", token)
    refused(
        apply_as(plane, MALLORY, ns, agent("a2", secrets=ref("run1-0a1b2c3d-token"))),
        field,
        "secrets.neverReferable",
    )
    secret(client, ns, PROVIDER_KEYS, {LABEL_REFERABLE: "true"})
    refused(
        apply_as(plane, MALLORY, ns, agent("a3", secrets=ref(PROVIDER_KEYS, "ANTHROPIC_API_KEY"))),
        field,
        "secrets.neverReferable",
    )
    assert list(client.list(Agent, namespace=ns)) == []
    secret(client, ns, "search-key", {LABEL_REFERABLE: "true"})
    accepted = apply_as(plane, MALLORY, ns, agent("a4", secrets=ref("search-key")))
    assert accepted.returncode == 0, accepted.stderr


def test_kubectl_agents_over_the_limits_are_refused(plane: ControlPlane, client: Client, ns: str) -> None:
    refused(
        apply_as(plane, MALLORY, ns, agent("t", timeoutSeconds=86400)),
        "spec.timeoutSeconds",
        "maxTimeoutSeconds",
    )
    refused(apply_as(plane, MALLORY, ns, agent("p", priority=10)), "spec.priority", "policy rule priority")
    refused(
        apply_as(plane, MALLORY, ns, agent("r", resources={"limits": {"cpu": "64"}})),
        "spec.resources.limits.cpu",
        "maxResources",
    )
    refused(
        apply_as(plane, MALLORY, ns, agent("u", model={"name": "m", "baseURL": "http://attacker.example"})),
        "spec.model.baseURL",
        "allowedBaseURLs",
    )
    assert apply_as(plane, MALLORY, ns, agent("ok")).returncode == 0
    # A change that brings a forbidden value in is refused too.
    patch = kubectl_as(
        plane, MALLORY, "patch", "-n", ns, "agent/ok", "--type=merge", "-p", '{"spec":{"retries":10}}'
    )
    refused(patch, "spec.retries", "maxRetries")
    # An Execution may not raise its run's priority beyond the range either.
    refused(apply_as(plane, MALLORY, ns, execution("hi", priority=9)), "spec.priority")
    assert apply_as(plane, MALLORY, ns, execution("normal", priority=5)).returncode == 0


def test_kubectl_agents_that_run_code_outside_the_required_sandbox_are_refused(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    """The policy requires a RuntimeClass of the allowed ones for Agents that run code (shell, python,
    a stdio MCP server); Agents that run none are not asked for one."""
    field = "spec.runtimeClassName"
    refused(apply_as(plane, MALLORY, ns, agent("sh", tools=["shell"])), field, "runtimeClass.require")
    stdio = [{"name": "fs", "command": ["mcp-fs"], "tools": ["*"]}]
    refused(apply_as(plane, MALLORY, ns, agent("mcp", mcpServers=stdio)), field, "runtimeClass.require")
    refused(
        apply_as(plane, MALLORY, ns, agent("py", tools=["python"], runtimeClassName="runc")),
        field,
        "runtimeClass.allowed",
    )
    assert (
        apply_as(plane, MALLORY, ns, agent("boxed", tools=["shell"], runtimeClassName="gvisor")).returncode
        == 0
    )
    assert apply_as(plane, MALLORY, ns, agent("reader", tools=["files"])).returncode == 0
    assert {a.metadata.name for a in client.list(Agent, namespace=ns) if a.metadata} == {"boxed", "reader"}


def test_owner_label_spoofing_is_refused(plane: ControlPlane, client: Client, ns: str) -> None:
    owner = {constants.LABEL_OWNER: "victim-hash"}
    label = f"metadata.labels.{constants.LABEL_OWNER}"
    refused(apply_as(plane, MALLORY, ns, agent("spoof", owner)), label, "only the Agentry API")
    assert apply_as(plane, MALLORY, ns, agent("ok")).returncode == 0
    patch = json.dumps({"metadata": {"labels": owner}})
    refused(kubectl_as(plane, MALLORY, "patch", "-n", ns, "agent/ok", "--type=merge", "-p", patch), label)
    refused(apply_as(plane, MALLORY, ns, execution("spoof", owner)), label)
    # The API's ServiceAccount may set it, and then nobody else may change or remove it.
    assert apply_as(plane, API_SA, ns, agent("mine", owner)).returncode == 0
    mine = execution("mine", owner)
    mine["spec"]["agentRef"]["name"] = "mine"  # a run names only its owner's Agents (test_run_gate.py)
    assert apply_as(plane, API_SA, ns, mine).returncode == 0
    relabel = json.dumps({"metadata": {"labels": {constants.LABEL_OWNER: "mallory-hash"}}})
    refused(
        kubectl_as(plane, MALLORY, "patch", "-n", ns, "execution/mine", "--type=merge", "-p", relabel), label
    )
    remove = json.dumps({"metadata": {"labels": {constants.LABEL_OWNER: None}}})
    refused(kubectl_as(plane, MALLORY, "patch", "-n", ns, "agent/mine", "--type=merge", "-p", remove), label)
    # Other changes of a labelled object stay possible.
    ok = kubectl_as(
        plane, MALLORY, "patch", "-n", ns, "agent/mine", "--type=merge", "-p", '{"spec":{"retries":1}}'
    )
    assert ok.returncode == 0, ok.stderr


def test_the_webhook_fails_closed(plane: ControlPlane, client: Client, op: OperatorProcess, ns: str) -> None:
    configs = [c.to_dict() for c in client.list(ValidatingWebhookConfiguration)]
    policies = {w["name"].split(".")[0]: w["failurePolicy"] for c in configs for w in c["webhooks"]}
    assert policies["validate-agent"] == "Fail" and policies["validate-execution-owner"] == "Fail"
    op.proc.stop()
    attempts = iter(range(1000))
    try:
        result = eventually(
            lambda: (
                (r := apply_as(plane, MALLORY, ns, agent(f"while-down-{next(attempts)}"))).returncode != 0
                and r
            ),
            what="an Agent write to be refused while the webhook is down",
        )
        assert "failed calling webhook" in result.stderr, result.stderr
    finally:
        op.launch()
    eventually(lambda: apply_as(plane, MALLORY, ns, agent("after")).returncode == 0, what="the webhook back")
