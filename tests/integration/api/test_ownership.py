"""The ownership rule (docs/api.md): API agents are owned by Firestore, kubectl agents by the cluster;
a write made while the API server is unreachable is kept, visible as Pending, and retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.types import PatchType

from agentry_api.auth import owner_label
from agentry_api.cluster import Agent, Execution
from agentry_common import constants as c_
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess

from .helpers import AGENT, create_agent
from .server import ApiServer, TcpProxy, api_settings, port_of, start_api

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer admin-token-for-tests"}


def kubectl_agent(kube_client: Client, ns: str, name: str) -> None:
    kube_client.create(
        Agent.from_dict(
            {
                "metadata": {"name": name, "namespace": ns},
                "spec": {"instructions": "Made with kubectl.", "model": {"name": "claude-sonnet-4-5"}},
            }
        )
    )


def test_kubectl_agents_are_imported_for_the_admin_and_read_only(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    kubectl_agent(kube_client, namespace, "from-kubectl")
    admin = api.client(headers=ADMIN)
    doc = eventually(
        lambda: next(
            (a for a in admin.get("/api/agents").json()["items"] if a["id"] == "from-kubectl"), None
        ),
        what="the kubectl agent imported",
    )
    assert doc["source"] == "cluster" and not doc["editable"]
    assert doc["spec"]["instructions"] == "Made with kubectl."
    # A guest does not see it.
    guest = api.guest()
    assert guest.get("/api/agents").json()["items"] == []
    assert guest.get("/api/agents/from-kubectl").status_code == 404
    # The cluster owns it: edits through the API are refused with the reason, runs are allowed.
    r = admin.put("/api/agents/from-kubectl", json=AGENT)
    assert r.status_code == 409 and "kubectl" in r.json()["detail"]
    assert admin.delete("/api/agents/from-kubectl").status_code == 409
    assert admin.post("/api/agents/from-kubectl/runs").status_code == 202
    # kubectl changes flow into Firestore; a kubectl delete removes it.
    kube_client.patch(
        Agent,
        "from-kubectl",
        {"spec": {"description": "edited"}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    eventually(
        lambda: admin.get("/api/agents/from-kubectl").json()["spec"].get("description") == "edited",
        what="kubectl edit mirrored",
    )
    kube_client.delete(Agent, "from-kubectl", namespace=namespace)
    eventually(lambda: admin.get("/api/agents/from-kubectl").status_code == 404, what="import removed")


def test_api_agents_are_restored_after_kubectl_edits_and_deletes(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    kube_client.patch(
        Agent,
        agent["id"],
        {"spec": {"instructions": "Hijacked."}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
        field_manager="kubectl-edit",
    )
    eventually(
        lambda: (
            kube_client.get(Agent, agent["id"], namespace=namespace).spec["instructions"]
            == "Summarise the news."
        ),
        what="the Firestore definition re-applied",
    )
    kube_client.delete(Agent, agent["id"], namespace=namespace)

    def recreated() -> bool:
        try:
            return bool(kube_client.get(Agent, agent["id"], namespace=namespace).spec["instructions"])
        except ApiError:
            return False

    eventually(recreated, what="the deleted CR re-created from Firestore")
    eventually(lambda: c.get(f"/api/agents/{agent['id']}").json()["sync"]["state"] == "Synced", what="synced")


def test_executions_created_with_kubectl_belong_to_the_agents_owner(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    body = {
        "metadata": {"name": "by-kubectl", "namespace": namespace},
        "spec": {"agentRef": {"name": agent["id"]}},
    }
    # Unlabelled, a run of a user's Agent is nobody's to start (docs/security.md, "Who may start a run").
    with pytest.raises(ApiError, match=r"spec\.agentRef\.name: Agent .* belongs to an Agentry user"):
        kube_client.create(Execution.from_dict(body))
    # A cluster administrator acts for owners: labelled for the Agent's owner, it is theirs.
    body["metadata"]["labels"] = {c_.LABEL_OWNER: owner_label(c.get("/api/me").json()["id"])}
    kube_client.create(Execution.from_dict(body))
    ex = eventually(
        lambda: (r := c.get("/api/executions/by-kubectl")).status_code == 200 and r.json(), what="mirror"
    )
    assert ex["trigger"] == "Manual" and ex["agentId"] == agent["id"]
    eventually(
        lambda: c.get("/api/executions/by-kubectl").json()["correlationId"], what="operator's correlation id"
    )
    assert api.guest().get("/api/executions/by-kubectl").status_code == 404


@pytest.fixture
def proxied_api(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator: OperatorProcess,
    tmp_path: Path,
) -> Iterator[tuple[ApiServer, TcpProxy]]:
    """The API talking to the API server through a TCP proxy that the test can cut."""
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    host, port = port_of(config["clusters"][0]["cluster"]["server"])
    proxy = TcpProxy(host, port)
    proxy.start()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = tmp_path / "proxied.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    server = start_api(api_settings(firestore_project, namespace, str(path), kube_timeout_seconds=2.0))
    yield server, proxy
    server.stop()
    proxy.close()


def test_a_write_during_a_cluster_outage_is_kept_pending_and_retried(
    proxied_api: tuple[ApiServer, TcpProxy], kube_client: Client, namespace: str
) -> None:
    api, proxy = proxied_api
    c = api.guest()
    proxy.stop()
    r = c.post("/api/agents", json=AGENT)
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["sync"]["state"] == "Pending" and "unavailable" in agent["sync"]["message"]
    # Visible as pending, and nothing that needs the cluster pretends to work.
    assert c.get(f"/api/agents/{agent['id']}").json()["sync"]["state"] == "Pending"
    run = c.post(f"/api/agents/{agent['id']}/runs")
    assert run.status_code == 409 and "sync Pending" in run.json()["detail"]
    ready = c.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["kubernetes"] == "unavailable"
    assert "127.0.0.1" not in ready.text and "Error" not in ready.text  # no internals to strangers
    with pytest.raises(ApiError):
        kube_client.get(Agent, agent["id"], namespace=namespace)

    proxy.start()
    eventually(
        lambda: c.get(f"/api/agents/{agent['id']}").json()["sync"]["state"] == "Synced",
        timeout=30,
        what="the pending write retried",
    )
    assert (
        kube_client.get(Agent, agent["id"], namespace=namespace).spec["instructions"] == "Summarise the news."
    )
    run = c.post(f"/api/agents/{agent['id']}/runs")
    assert run.status_code == 202
    logs_url = f"/api/executions/{run.json()['execution']}/logs"
    eventually(lambda: "no pod yet" not in c.get(logs_url).json()["note"], what="the run's Job mirrored")
    # Logs during an outage: stored events, and a note that says why.
    proxy.stop()
    logs = c.get(logs_url).json()
    assert logs["source"] == "events" and "cluster unreachable" in logs["note"]
    proxy.start()

    # A delete during an outage is kept too: the agent disappears from the API at once, the CR later.
    proxy.stop()
    assert c.delete(f"/api/agents/{agent['id']}").status_code == 204
    assert c.get(f"/api/agents/{agent['id']}").status_code == 404
    kube_client.get(Agent, agent["id"], namespace=namespace)  # still there
    proxy.start()

    def gone() -> bool:
        try:
            kube_client.get(Agent, agent["id"], namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(gone, timeout=30, what="the pending delete retried")
