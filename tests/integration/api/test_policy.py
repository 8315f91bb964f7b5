"""Attacks of a dashboard user on the agent policy (agentry_common.policy), on real servers: each is a
422 naming the rule and the field, and nothing is stored (no Firestore document, no Agent CR)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Secret

from agentry_common import constants
from agentry_common.policy import LABEL_PROVIDER_KEYS, LABEL_REFERABLE, POLICY_FILE_ENV
from agentry_common.resources import Agent
from agentry_localcluster.kube import ControlPlane

from .helpers import AGENT
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

PROVIDER_KEYS = "llm-keys"  # the gateway's provider-key Secret, named in the policy (as the chart does)


@pytest.fixture
def policy_api(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator_ready: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ApiServer]:
    """The API with a policy file like the chart's: the provider-key Secret never referable."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"secrets": {"neverReferableNames": [PROVIDER_KEYS]}}))
    monkeypatch.setenv(POLICY_FILE_ENV, str(path))
    server = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig)))
    yield server
    server.stop()


def make_secret(client: Client, ns: str, name: str, labels: dict[str, str]) -> None:
    client.create(
        Secret.from_dict(
            {"metadata": {"name": name, "namespace": ns, "labels": labels}, "stringData": {"k": "v"}}
        )
    )


def refused(c: httpx.Client, spec: dict[str, Any], rule: str, loc: list[Any]) -> str:
    r = c.post("/api/agents", json={**AGENT, "spec": {**AGENT["spec"], **spec}})
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["loc"] == ["body", *loc], detail
    assert f"policy rule {rule}" in detail["msg"], detail
    return str(detail["msg"])


def ref(name: str, env: str = "SEARCH_KEY") -> list[dict[str, Any]]:
    return [{"env": env, "secretKeyRef": {"name": name, "key": "k"}}]


def test_secrets_outside_the_policy_are_refused_and_nothing_is_stored(
    policy_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = policy_api.guest()
    secret_loc = ["spec", "secrets", 0, "secretKeyRef", "name"]
    # A Secret of the namespace that has not opted in (somebody else's credentials).
    make_secret(kube_client, namespace, "db-password", {"team": "payments"})
    msg = refused(c, {"secrets": ref("db-password")}, "secrets.optIn", secret_loc)
    assert "db-password" in msg and LABEL_REFERABLE in msg
    # Absent: refused the same way (it could be created later, unlabelled).
    refused(c, {"secrets": ref("not-there")}, "secrets.optIn", secret_loc)
    # Another run's token Secret (labelled like the operator's), even if someone opted it in.
    token = {
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_EXECUTION: "run1",
        LABEL_REFERABLE: "true",
    }
    make_secret(kube_client, namespace, "run1-0a1b2c3d-token", token)
    msg = refused(c, {"secrets": ref("run1-0a1b2c3d-token")}, "secrets.neverReferable", secret_loc)
    assert "run tokens" in msg
    # The gateway's provider-key Secret, by name and by label; under a provider-key variable too.
    make_secret(kube_client, namespace, PROVIDER_KEYS, {LABEL_REFERABLE: "true"})
    refused(c, {"secrets": ref(PROVIDER_KEYS, "ANTHROPIC_API_KEY")}, "secrets.neverReferable", secret_loc)
    make_secret(kube_client, namespace, "other-keys", {LABEL_PROVIDER_KEYS: "true", LABEL_REFERABLE: "true"})
    refused(c, {"secrets": ref("other-keys")}, "secrets.neverReferable", secret_loc)

    assert c.get("/api/agents").json()["items"] == []
    assert list(kube_client.list(Agent, namespace=namespace)) == []

    # An opted-in Secret is fine.
    make_secret(kube_client, namespace, "search-key", {LABEL_REFERABLE: "true"})
    r = c.post("/api/agents", json={**AGENT, "spec": {**AGENT["spec"], "secrets": ref("search-key")}})
    assert r.status_code == 201, r.text
    cr = kube_client.get(Agent, r.json()["id"], namespace=namespace)
    assert cr.spec["secrets"][0]["secretKeyRef"]["name"] == "search-key"


def test_limits_outside_the_policy_are_refused(
    policy_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = policy_api.guest()
    refused(c, {"timeoutSeconds": 86400}, "maxTimeoutSeconds", ["spec", "timeoutSeconds"])
    refused(c, {"priority": 10}, "priority", ["spec", "priority"])
    refused(c, {"retries": 10}, "maxRetries", ["spec", "retries"])
    big = {"resources": {"limits": {"cpu": "64"}}}
    refused(c, big, "maxResources", ["spec", "resources", "limits", "cpu"])
    gpu = {"resources": {"requests": {"nvidia.com/gpu": "1"}}}
    refused(c, gpu, "maxResources", ["spec", "resources", "requests", "nvidia.com/gpu"])
    endpoint = {"model": {"name": "m", "baseURL": "http://attacker.example/v1"}}
    refused(c, endpoint, "allowedBaseURLs", ["spec", "model", "baseURL"])
    assert c.get("/api/agents").json()["items"] == []
    assert list(kube_client.list(Agent, namespace=namespace)) == []
    # And an update cannot bring them in either.
    r = c.post("/api/agents", json=AGENT)
    assert r.status_code == 201, r.text
    agent = r.json()["id"]
    r = c.put(f"/api/agents/{agent}", json={**AGENT, "spec": {**AGENT["spec"], "timeoutSeconds": 86400}})
    assert r.status_code == 422 and "maxTimeoutSeconds" in r.text
    assert kube_client.get(Agent, agent, namespace=namespace).spec["timeoutSeconds"] == 1800  # unchanged


def test_every_violation_is_reported_in_one_answer(
    policy_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = policy_api.guest()
    spec = {**AGENT["spec"], "timeoutSeconds": 86400, "retries": 10, "priority": 10}
    r = c.post("/api/agents", json={**AGENT, "spec": spec})
    assert r.status_code == 422, r.text
    locs = {tuple(d["loc"]) for d in r.json()["detail"]}
    assert locs == {("body", "spec", f) for f in ("timeoutSeconds", "retries", "priority")}, r.text
    assert list(kube_client.list(Agent, namespace=namespace)) == []


def test_an_agent_whose_job_would_be_refused_is_refused_when_saved(
    policy_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    """Within the policy and the CRD, but the Job of its runs is invalid (a memory request above the
    operator's memory limit): the operator's webhook dry-runs that Job, so the save is refused with the
    API server's words and the field, and nothing is stored; the same agent within the limit saves."""
    c = policy_api.guest()
    spec = {**AGENT["spec"], "resources": {"requests": {"memory": "2Gi"}}}
    r = c.post("/api/agents", json={**AGENT, "spec": spec})
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    for part in (
        "the Job of this agent's runs would be refused",
        "spec.template.spec.containers[0].resources.requests",
        "from the Agent's spec.resources",
        "must be less than or equal to memory limit",
    ):
        assert part in detail["msg"], (part, detail)
    assert c.get("/api/agents").json()["items"] == []
    assert list(kube_client.list(Agent, namespace=namespace)) == []
    spec = {**AGENT["spec"], "resources": {"requests": {"memory": "512Mi"}}}
    r = c.post("/api/agents", json={**AGENT, "spec": spec})
    assert r.status_code == 201, r.text
