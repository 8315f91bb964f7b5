"""A trigger's runs pass the same gate as every other run: a control plane, operator and API of this
module's own, the operator with low guest quotas (2 runs a day). A Trigger made with kubectl (no
owner label) starts nothing for an API user's Agent; only the identities that act for owners may
label a Trigger; and a trigger's runs count against its owner's quotas."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from lightkube import Client
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from agentry_api.auth import owner_label
from agentry_common import constants as c
from agentry_common.resources import Execution, Trigger
from agentry_common.triggers import sign_github
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

from .helpers import create_agent
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

MALLORY = "mallory"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("trigger-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane) as c_:
        yield c_


@pytest.fixture(scope="module")
def op(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = start_operator(
        plane,
        tmp_path_factory.mktemp("trigger-operator"),
        AGENTRY_GUEST_QUOTA_RUNS_PER_DAY="2",
        AGENTRY_GUEST_QUOTA_CONCURRENT_RUNS="100",
    )
    yield proc
    proc.proc.stop()


@pytest.fixture
def ns(plane: ControlPlane, client: Client, op: OperatorProcess) -> Iterator[str]:
    """A namespace where mallory may write Triggers and Secrets (as a tenant with kubectl)."""
    name = make_namespace(client, "trg")
    rules = [
        {"apiGroups": ["agentry.dev"], "resources": ["triggers"], "verbs": ["create", "get", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    client.create(Role.from_dict({"metadata": {"name": "tenant", "namespace": name}, "rules": rules}))
    binding = {
        "metadata": {"name": "tenant", "namespace": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"kind": "User", "name": MALLORY, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    client.create(RoleBinding.from_dict(binding))
    eventually(
        lambda: (
            plane.kubectl(
                f"--as={MALLORY}", "auth", "can-i", "create", "triggers", "-n", name, check=False
            ).returncode
            == 0
        ),
        what="mallory's RBAC",
    )
    yield name
    client.delete(Namespace, name)


@pytest.fixture
def api(firestore_project: str, plane: ControlPlane, ns: str) -> Iterator[ApiServer]:
    server = start_api(api_settings(firestore_project, ns, str(plane.kubeconfig)))
    yield server
    server.stop()


def trigger(name: str, agent: str, owner: str | None = None) -> dict[str, Any]:
    labels = {c.LABEL_OWNER: owner} if owner else {}
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Trigger",
        "metadata": {"name": name, "labels": labels},
        "spec": {"agentRef": {"name": agent}, "secretRef": {"name": f"{name}-key"}},
    }


def key_secret(name: str, key: str) -> dict[str, Any]:
    data = {"key": base64.b64encode(key.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-key"}, "data": data}


def kubectl_create(plane: ControlPlane, ns: str, manifest: dict[str, Any], user: str | None = None) -> Any:
    who = [f"--as={user}"] if user else []
    return plane.kubectl(*who, "create", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def deliver(api: ApiServer, name: str, key: str, payload: Any) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", "x-github-delivery": str(uuid.uuid4())}
    return httpx.post(
        f"{api.url}/hooks/{name}", content=body, headers={**headers, **sign_github(key.encode(), body)}
    )


def runs_of(client: Client, ns: str, agent: str) -> list[Any]:
    return list(client.list(Execution, namespace=ns, labels={c.LABEL_AGENT: agent}))


def test_a_trigger_whose_owner_may_not_run_the_agent_starts_nothing(
    api: ApiServer, plane: ControlPlane, client: Client, ns: str
) -> None:
    user = api.guest()
    agent = create_agent(user)["id"]
    # A tenant may not label a Trigger as someone's (it would run their Agents as them).
    spoofed = kubectl_create(plane, ns, trigger("spoof", agent, owner=owner_label("someone")), user=MALLORY)
    assert spoofed.returncode != 0 and "denied the request" in spoofed.stderr, spoofed.stderr
    assert f"metadata.labels.{c.LABEL_OWNER}" in spoofed.stderr
    # Without a label it is made, and is the import owner's: its deliveries do not run the user's Agent.
    assert kubectl_create(plane, ns, key_secret("stray", "k-1"), user=MALLORY).returncode == 0
    made = kubectl_create(plane, ns, trigger("stray", agent), user=MALLORY)
    assert made.returncode == 0, made.stderr
    refused = deliver(api, "stray", "k-1", {"a": 1})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith("the cluster refused the run")
    assert "owner" in refused.json()["detail"]
    assert runs_of(client, ns, agent) == []

    # Labelled for the Agent's owner by an identity that acts for owners (here an administrator),
    # the same kind of Trigger runs it.
    client.create(
        Secret.from_dict(
            {**key_secret("labelled", "k-2"), "metadata": {"name": "labelled-key", "namespace": ns}}
        )
    )
    user_id = user.get("/api/me").json()["id"]
    labelled = trigger("labelled", agent, owner=owner_label(user_id))
    client.create(Trigger.from_dict({**labelled, "metadata": {**labelled["metadata"], "namespace": ns}}))
    r = deliver(api, "labelled", "k-2", {"a": 2})
    assert r.status_code == 202, r.text
    ex = client.get(Execution, r.json()["execution"], namespace=ns)
    assert ex.metadata is not None and ex.metadata.labels is not None
    assert ex.metadata.labels[c.LABEL_OWNER] == owner_label(user_id)
    eventually(
        lambda: (client.get(Execution, r.json()["execution"], namespace=ns).status or {}).get("jobName"),
        what="started",
    )
    # It is the user's run in the API as well.
    assert user.get(f"/api/executions/{r.json()['execution']}").json()["trigger"] == "Webhook"


def test_a_triggers_runs_count_against_its_owners_quota(api: ApiServer, client: Client, ns: str) -> None:
    user = api.guest()
    agent = create_agent(user)["id"]
    r = user.post("/api/triggers", json={"name": "daily", "agent": agent})
    assert r.status_code == 201, r.text
    key = r.json()["secret"]
    names = []
    for i in range(3):
        answer = deliver(api, "daily", key, {"n": i})
        assert answer.status_code == 202, answer.text
        names.append(answer.json()["execution"])

    def statuses() -> list[dict[str, Any]] | None:
        found = [dict(client.get(Execution, n, namespace=ns).status or {}) for n in names]
        return found if all(s.get("jobName") or s.get("phase") == "Failed" for s in found) else None

    found = eventually(statuses, what="the gate to decide the three runs")
    assert sorted(bool(s.get("jobName")) for s in found) == [False, True, True], found
    over = next(s for s in found if not s.get("jobName"))
    assert over["phase"] == "Failed" and over["reason"] == "RunsPerDayQuota", over
