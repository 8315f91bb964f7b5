"""Steering a live run against the real API, control plane, governed operator and a real gateway:
`POST /api/executions/{id}/messages` on a Running run queues the message in the run's inbox at the
gateway (202), the run's own token reads it there, its delivery and the agent's double-texting policy
show through `GET .../messages`, `/interrupt` queues an interrupt, and a message that arrives after
the run has journaled its end becomes a follow-up once the run has finished (never lost).

The run's pod is played (no kubelet); what its runtime would do at the gateway (an append naming the
delivered message, the final append closing the inbox) is done here with its run token."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from lightkube import Client

from agentry_common.checkpoints import CHECKPOINT_PATH, sign_entry
from agentry_common.resources import Execution
from agentry_common.steering import INBOX_PATH
from agentry_common.tokens import mint_run_token
from agentry_localcluster import localhttp
from tests.fixtures.helpers import play_kubelet
from tests.integration.operator.test_governance import KEYRING, Gateway

from .helpers import REPORT, create_agent, pod_of, run, wait_api_phase
from .server import ApiServer
from .test_follow_ups import (  # noqa: F401  (the module's fixtures: a governed plane of its own)
    CHECKPOINT,
    gateway,
    gateway_api,
    governed_operator,
    kube_client,
    namespace,
    plane,
    set_checkpoint,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def api(gateway_api: ApiServer) -> ApiServer:  # noqa: F811
    return gateway_api


def live_run(client: httpx.Client, kube_client: Client, namespace: str, **agent: Any) -> tuple[str, str]:  # noqa: F811
    """A Running run of a new agent: its name and its Execution's uid."""
    made = create_agent(client, **agent)
    name = str(run(client, made["id"])["execution"])
    play_kubelet(kube_client, pod_of(kube_client, namespace, name), "Running")
    wait_api_phase(client, name, "Running")
    uid = str(kube_client.get(Execution, name, namespace=namespace).metadata.uid)
    return name, uid


def runtime(gateway: Gateway, namespace: str, name: str, uid: str) -> dict[str, str]:  # noqa: F811
    token = mint_run_token(
        KEYRING,
        namespace=namespace,
        execution=name,
        agent="a",
        execution_uid=uid,
        user="u",
        active_deadline_seconds=600,
    )
    return {"authorization": f"Bearer {token}"}


def append(gateway: Gateway, headers: dict[str, str], **extra: Any) -> dict[str, Any]:  # noqa: F811
    """The run's first journal entry, as its runtime appends it (with steering's part: `extra`)."""
    body = {"entries": [sign_entry("key", "", 1, "message", {"n": 1}).wire()], **extra}
    r = localhttp.post(f"{gateway.url}{CHECKPOINT_PATH}", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_message_for_a_running_run_reaches_its_inbox_and_shows_its_state(
    api: ApiServer,
    gateway: Gateway,  # noqa: F811
    kube_client: Client,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    owner, stranger = api.guest(), api.guest()
    name, uid = live_run(owner, kube_client, namespace)
    r = owner.post(f"/api/executions/{name}/messages", json={"message": "Also cover Friday."})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["delivery"] == "steered" and body["pending"] == "queue"
    assert (body["message"]["state"], body["message"]["text"], body["message"]["seq"]) == (
        "queued",
        "Also cover Friday.",
        1,
    )
    # The run's own token finds it in its inbox, beside its journal.
    headers = runtime(gateway, namespace, name, uid)
    got = localhttp.get(f"{gateway.url}{INBOX_PATH}", headers=headers, timeout=30).json()
    assert [m["text"] for m in got["messages"]] == ["Also cover Friday."]
    assert append(gateway, headers) == {"last": 1, "inbox": 1}  # the hint the runtime reads
    # Delivered by the runtime's next append: the state shows it.
    interrupted = owner.post(f"/api/executions/{name}/interrupt", json={})
    assert interrupted.status_code == 202 and interrupted.json()["message"]["interrupt"] is True
    listing = owner.get(f"/api/executions/{name}/messages").json()
    assert listing["available"] and listing["onInterrupt"] == "end"
    assert [(m["seq"], m["state"]) for m in listing["messages"]] == [(1, "queued"), (2, "queued")]
    # Not yours: absent, as for every run route.
    assert stranger.post(f"/api/executions/{name}/messages", json={"message": "x"}).status_code == 404
    assert stranger.get(f"/api/executions/{name}/messages").status_code == 404
    for bad in ({}, {"message": "  "}, {"message": "x", "by": "someone"}):
        assert owner.post(f"/api/executions/{name}/messages", json=bad).status_code == 422, bad


def test_reject_refuses_a_second_message_until_the_first_is_delivered(
    api: ApiServer,
    gateway: Gateway,  # noqa: F811
    kube_client: Client,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    owner = api.guest()
    spec = {"instructions": "Go.", "model": {"name": "claude-sonnet-4-5"}, "steering": {"pending": "reject"}}
    name, uid = live_run(owner, kube_client, namespace, spec=spec)
    assert owner.post(f"/api/executions/{name}/messages", json={"message": "one"}).status_code == 202
    second = owner.post(f"/api/executions/{name}/messages", json={"message": "two"})
    assert second.status_code == 409 and "reject" in second.json()["detail"], second.text
    headers = runtime(gateway, namespace, name, uid)
    append(gateway, headers, delivered=[1])
    assert owner.post(f"/api/executions/{name}/messages", json={"message": "two"}).status_code == 202
    states = [m["state"] for m in owner.get(f"/api/executions/{name}/messages").json()["messages"]]
    assert states == ["delivered", "queued"]


def test_a_message_after_the_runs_end_becomes_a_follow_up(
    api: ApiServer,
    gateway: Gateway,  # noqa: F811
    kube_client: Client,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    owner = api.guest()
    name, uid = live_run(owner, kube_client, namespace)
    # The runtime's last append closed the inbox; the pod has not ended yet (the API still says Running).
    assert append(gateway, runtime(gateway, namespace, name, uid), close="idle") == {
        "last": 1,
        "closed": True,
    }

    def end_the_pod() -> None:
        pod = pod_of(kube_client, namespace, name)
        play_kubelet(kube_client, pod, "Succeeded", 0, {**REPORT, "checkpoint": CHECKPOINT})
        set_checkpoint(kube_client, namespace, name, CHECKPOINT)

    ender = threading.Timer(2.0, end_the_pod)
    ender.start()
    r = owner.post(f"/api/executions/{name}/messages", json={"message": "And Saturday?"})
    ender.join()
    assert r.status_code == 201, r.text  # not lost: the continuation, once the run had finished
    child = r.json()
    assert child["parent"] == name and child["id"] != name
    refused = owner.post(f"/api/executions/{name}/interrupt", json={})
    assert refused.status_code == 409 and "nothing to interrupt" in refused.json()["detail"]
