"""Follow-ups against the real API, control plane and operator: `POST /api/executions/{id}/messages`
creates the continuation (spec.parentRef, the caller's owner label, trigger Manual) by the path of
every run, refuses what cannot be continued with a reason, counts against the run quotas, and the
thread of a run lists its parent and continuations with each one's cost (kubectl's too).

The finished parent is played: its pod's report through pods/status (no kubelet), and its
status.checkpoint written through the Execution's status subresource, as the operator copies it
from the report.

Follow-ups need the LLM gateway (the operator's webhook refuses them without it: journals live
there), so these tests run on a control plane of their own with a governed operator and a real
gateway (tests/fixtures/governed.py), and the API on that plane. The fixtures `api`, `kube_client`
and `namespace` here replace the shared ones for this module and for the CLI's
and the browser's follow-up tests, which import them."""
# ruff: noqa: F811  (fixtures/governed.py's fixtures, imported: a governed plane, gateway and operator)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from agentry_common import constants
from agentry_common.resources import Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.governed import gateway, governed_operator, kube_client, plane  # noqa: F401
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.servers import make_namespace
from tests.integration.operator.test_governance import KEY, Gateway

from .helpers import REPORT, create_agent, pod_of, run, wait_api_phase
from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration

CHECKPOINT = {"entries": 6, "resumes": 0, "interruptedCalls": 0, "lastAt": "2026-11-27T00:00:00Z"}
FOLLOW_UP_REPORT = {
    "stopReason": "end_turn",
    "summary": "Friday is quiet too.",
    "usage": {"inputTokens": 2000, "outputTokens": 100, "costUSD": "0.0075", "model": "claude-sonnet-4-5"},
    "checkpoint": {**CHECKPOINT, "entries": 10},
}


@pytest.fixture
def namespace(kube_client: Client) -> Iterator[str]:
    name = make_namespace(kube_client, "t")
    yield name
    kube_client.delete(Namespace, name)


@pytest.fixture
def api(firestore_project: str, namespace: str, plane: ControlPlane) -> Iterator[ApiServer]:
    yield from serve(api_settings(firestore_project, namespace, str(plane.kubeconfig)))


@pytest.fixture
def gateway_api(
    firestore_project: str, namespace: str, plane: ControlPlane, gateway: Gateway
) -> Iterator[ApiServer]:
    """The API with the gateway's URL and keys (steering and memory reach it; the modules that
    import this module's governed plane)."""
    settings = api_settings(
        firestore_project, namespace, str(plane.kubeconfig), gateway_url=gateway.url, token_keys=f"test:{KEY}"
    )
    yield from serve(settings)


def executions(kube_client: Client, namespace: str) -> set[str]:
    return {str(x.metadata.name) for x in kube_client.list(Execution, namespace=namespace)}


def set_checkpoint(kube_client: Client, namespace: str, name: str, checkpoint: dict[str, Any]) -> None:
    kube_client.patch(
        Execution.Status,
        name,
        {"status": {"checkpoint": checkpoint}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


def finish(
    client: httpx.Client,
    kube_client: Client,
    namespace: str,
    name: str,
    report: dict[str, Any],
    checkpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    """Play the run's pod to Succeeded with `report`; give it `checkpoint` (None: no journal)."""
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(
        kube_client, pod, "Succeeded", 0, {**report, **({"checkpoint": checkpoint} if checkpoint else {})}
    )
    wait_api_phase(client, name, "Succeeded")
    if checkpoint is None:
        return dict(client.get(f"/api/executions/{name}").json())
    set_checkpoint(kube_client, namespace, name, checkpoint)

    def mirrored() -> dict[str, Any] | None:
        view: dict[str, Any] = client.get(f"/api/executions/{name}").json()
        return view if (view.get("checkpoint") or {}).get("entries") == checkpoint["entries"] else None

    found: dict[str, Any] = eventually(mirrored, what=f"the checkpoint of {name} in the API")
    return found


def finished_run(client: httpx.Client, kube_client: Client, namespace: str, agent_id: str) -> str:
    name = str(run(client, agent_id, "Summarise Monday's news.")["execution"])
    finish(client, kube_client, namespace, name, REPORT, CHECKPOINT)
    return name


def reply(client: httpx.Client, run_name: str, message: str) -> httpx.Response:
    return client.post(f"/api/executions/{run_name}/messages", json={"message": message})


def test_a_reply_continues_the_run_and_the_thread_shows_every_runs_cost(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    client = api.guest()
    agent = create_agent(client)
    parent = finished_run(client, kube_client, namespace, agent["id"])

    r = reply(client, parent, "Now do the same for Friday.")
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["parent"] == parent and child["agentId"] == agent["id"] and child["trigger"] == "Manual"
    assert child["input"] == "Now do the same for Friday." and child["phase"] == "Pending"
    assert r.headers["location"] == f"/api/executions/{child['id']}"
    made = kube_client.get(Execution, child["id"], namespace=namespace)
    first = kube_client.get(Execution, parent, namespace=namespace)
    assert made.spec["parentRef"] == {"name": parent} and made.spec["agentRef"] == {"name": agent["id"]}
    assert made.spec["input"] == "Now do the same for Friday." and made.spec["trigger"] == "Manual"
    assert made.metadata.labels[constants.LABEL_OWNER] == first.metadata.labels[constants.LABEL_OWNER]

    finish(client, kube_client, namespace, child["id"], FOLLOW_UP_REPORT, FOLLOW_UP_REPORT["checkpoint"])
    thread = client.get(f"/api/executions/{parent}").json()["thread"]
    assert [(t["name"], t["relation"], t["phase"], t["tokens"], t["costUSD"]) for t in thread] == [
        (parent, "self", "Succeeded", 1500, "0.0081"),
        (child["id"], "continuation", "Succeeded", 2100, "0.0075"),
    ]
    shown = client.get(f"/api/executions/{child['id']}").json()
    assert shown["parent"] == parent and shown["checkpoint"]["entries"] == 10
    assert [(t["name"], t["relation"], t["parent"]) for t in shown["thread"]] == [
        (parent, "ancestor", None),
        (child["id"], "self", parent),
    ]

    # A follow-up created with kubectl (by an identity that may write the owner label) joins the
    # thread through the watcher's mirror, as its parent's continuation.
    by_kubectl = {
        "metadata": {
            "name": f"{child['id'][:40]}-kubectl",
            "namespace": namespace,
            "labels": {constants.LABEL_OWNER: first.metadata.labels[constants.LABEL_OWNER]},
        },
        "spec": {
            "agentRef": {"name": agent["id"]},
            "parentRef": {"name": child["id"]},
            "input": "And Saturday?",
        },
    }
    kube_client.create(Execution.from_dict(by_kubectl))
    kubectl_name = by_kubectl["metadata"]["name"]

    def grown() -> list[Any] | None:
        items: list[Any] = client.get(f"/api/executions/{parent}").json()["thread"]
        return items if len(items) == 3 else None

    thread = eventually(grown, what="the kubectl follow-up in the thread")
    assert [(t["name"], t["relation"], t["parent"]) for t in thread] == [
        (parent, "self", None),
        (child["id"], "continuation", parent),
        (kubectl_name, "continuation", child["id"]),
    ]
    assert client.get(f"/api/executions/{kubectl_name}").json()["parent"] == child["id"]
    # The run page shows the thread with each run's cost, linked, and the reply box enabled.
    page = client.get(f"/executions/{child['id']}", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert f'href="/executions/{parent}"' in page.text and f'href="/executions/{kubectl_name}"' in page.text
    assert "$0.0081" in page.text and "$0.0075" in page.text
    assert 'id="reply-send">Reply' in page.text.replace("\n", "")


def test_what_cannot_be_continued_is_refused_with_a_reason_and_nothing_created(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner, stranger = api.guest(), api.guest()
    agent = create_agent(owner)
    parent = finished_run(owner, kube_client, namespace, agent["id"])
    live = run(owner, agent["id"])["execution"]
    play_kubelet(kube_client, pod_of(kube_client, namespace, live), "Running")
    wait_api_phase(owner, live, "Running")
    no_journal = str(run(owner, agent["id"])["execution"])
    finish(owner, kube_client, namespace, no_journal, REPORT, None)
    before = executions(kube_client, namespace)

    # Another user's run is absent to them, exactly as for every other run route.
    r = reply(stranger, parent, "mine now")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    assert reply(owner, "no-such-run", "hello").status_code == 404

    # A live run is steered, which needs the gateway at the API too (this API has none): 409, why.
    r = reply(owner, live, "change course")
    assert r.status_code == 409, r.text
    assert "cannot be steered" in r.json()["detail"] and "LLM gateway" in r.json()["detail"]

    r = reply(owner, no_journal, "again")
    assert r.status_code == 409 and "no checkpoint journal" in r.json()["detail"], r.text

    for bad in ({}, {"message": ""}, {"message": "   "}, {"message": "x", "agentRef": "other"}):
        r = owner.post(f"/api/executions/{parent}/messages", json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = reply(owner, parent, "use sk-ant-" + "a" * 30)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "message"], r.text
    assert executions(kube_client, namespace) == before


@pytest.fixture
def tight_api(firestore_project: str, namespace: str, plane: ControlPlane) -> Iterator[ApiServer]:
    settings = api_settings(
        firestore_project, namespace, str(plane.kubeconfig), guest_quota_concurrent_runs=1
    )
    yield from serve(settings)


def test_a_follow_up_counts_against_the_run_quotas(
    tight_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner = tight_api.guest()
    agent = create_agent(owner)
    parent = finished_run(owner, kube_client, namespace, agent["id"])
    first = reply(owner, parent, "and Friday?")
    assert first.status_code == 201, first.text  # the only run not finished: Pending
    before = executions(kube_client, namespace)
    r = reply(owner, parent, "and Saturday?")
    assert r.status_code == 429, r.text
    assert r.json()["limit"] == "concurrent_runs" and r.json()["allowed"] == 1
    assert executions(kube_client, namespace) == before
