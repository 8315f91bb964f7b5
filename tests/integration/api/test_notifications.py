"""Notifications against real local HTTP receivers: a run's end reaches a signed webhook at least once
with one idempotency key; a sink that never answers is dead-lettered after the schedule and redelivered;
private addresses are refused; nobody sees or redelivers another's; the outbox survives a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.cloud import firestore
from lightkube import Client

from agentry_common.notifications import secret_key
from agentry_common.records import Collection
from agentry_common.triggers import verify_generic
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.notify_receiver import Receiver

from .helpers import REPORT, create_agent, pod_of, run, wait_api_phase
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

FAST = {
    "notify_retry_seconds": [0.5, 0.5, 0.5],
    "notify_poll_seconds": 0.2,
    "notify_timeout_seconds": 1.0,
    "notify_allowed_hosts": ["127.0.0.1"],
    "public_url": "https://agentry.example.com",
}


def notify_api(firestore_project: str, namespace: str, kube: ControlPlane, **overrides: Any) -> ApiServer:
    settings = api_settings(firestore_project, namespace, str(kube.kubeconfig), **{**FAST, **overrides})
    return start_api(settings)


@pytest.fixture
def napi(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[ApiServer]:
    server = notify_api(firestore_project, namespace, kube)
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def subscribe(c: httpx.Client, url: str, **body: Any) -> dict[str, Any]:
    r = c.post(
        "/api/notifications/subscriptions", json={"name": "mine", "sink": "webhook", "url": url, **body}
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def finish_run(c: httpx.Client, kube_client: Client, namespace: str, agent_id: str) -> str:
    name = str(run(c, agent_id)["execution"])
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    wait_api_phase(c, name, "Succeeded")
    return name


def deliveries(c: httpx.Client, state: str | None = None) -> list[dict[str, Any]]:
    r = c.get("/api/notifications/deliveries", params={"state": state} if state else None)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_a_run_end_reaches_a_signed_webhook_once_through_two_failures(
    napi: ApiServer, kube_client: Client, namespace: str
) -> None:
    receiver = Receiver(script=[500, 503])  # fails twice, then accepts
    try:
        c = napi.guest()
        agent = create_agent(c)
        sub = subscribe(
            c, receiver.url, scope={"kind": "agent", "name": agent["id"]}, events=["run.succeeded"]
        )
        assert sub["secret"].startswith("whsec_") and sub["urlHint"] == "http://127.0.0.1/…"
        assert "secret" not in c.get(f"/api/notifications/subscriptions/{sub['id']}").json() or (
            c.get(f"/api/notifications/subscriptions/{sub['id']}").json()["secret"] is None
        )
        name = finish_run(c, kube_client, namespace, agent["id"])

        eventually(lambda: len(receiver.received) >= 3, timeout=30, what="three attempts")
        done = eventually(
            lambda: [d for d in deliveries(c) if d["state"] == "delivered"] or None,
            timeout=30,
            what="the delivery recorded as delivered",
        )
        time.sleep(1.5)  # three retry periods: no fourth attempt may come
        assert len(receiver.received) == 3
        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert ids == {done[0]["id"]}, "every attempt carries the same idempotency key"
        assert done[0]["attempts"] == 3 and done[0]["kind"] == "run.succeeded"
        last = receiver.received[-1]
        refusal, key = verify_generic(secret_key(sub["secret"]), last.body, last.headers, time.time(), 300)
        assert refusal is None and key == "id:" + done[0]["id"]
        wrong = verify_generic(secret_key("whsec_" + "A" * 44), last.body, last.headers, time.time(), 300)
        assert wrong[0] is not None, "another secret does not verify"
        body = last.json()
        assert body["kind"] == "run.succeeded" and body["execution"] == name and body["agent"] == agent["id"]
        assert body["link"] == f"https://agentry.example.com/executions/{name}"
    finally:
        receiver.close()


def test_a_sink_that_never_answers_is_dead_lettered_then_redelivered(
    napi: ApiServer, kube_client: Client, namespace: str
) -> None:
    receiver = Receiver(hang=True)
    try:
        c = napi.guest()
        agent = create_agent(c)
        subscribe(c, receiver.url)
        finish_run(c, kube_client, namespace, agent["id"])
        dead = eventually(lambda: deliveries(c, "dead") or None, timeout=60, what="a dead delivery")
        assert dead[0]["attempts"] == 4 and "no answer" in (dead[0]["lastError"] or "")
        assert len(receiver.received) == 4  # the first attempt and the three retries, no more

        stranger = napi.guest()
        r = stranger.post(f"/api/notifications/deliveries/{dead[0]['id']}/redeliver")
        assert r.status_code == 404, "another user cannot redeliver it"
        assert deliveries(stranger) == [], "nor see it"

        receiver.hang.clear()
        r = c.post(f"/api/notifications/deliveries/{dead[0]['id']}/redeliver")
        assert r.status_code == 202 and r.json()["state"] == "pending"
        eventually(lambda: deliveries(c, "delivered") or None, timeout=30, what="the redelivery")
        assert {x.headers["webhook-id"] for x in receiver.received} == {dead[0]["id"]}
    finally:
        receiver.close()


def test_private_addresses_are_refused_unless_allowed(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> None:
    server = notify_api(firestore_project, namespace, kube, notify_allowed_hosts=[])
    try:
        c = server.guest()
        for url in (
            "http://127.0.0.1:9/x",
            "http://169.254.169.254/latest",
            "http://10.1.2.3/",
            "http://localhost/",
        ):
            r = c.post("/api/notifications/subscriptions", json={"name": "x", "sink": "webhook", "url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["detail"][0]["loc"] == ["body", "url"], r.text
        r = c.post(
            "/api/notifications/subscriptions", json={"name": "x", "sink": "webhook", "url": "ftp://a.b/"}
        )
        assert r.status_code == 422 and "http" in r.json()["detail"][0]["msg"]
        r = c.post(
            "/api/notifications/subscriptions",
            json={
                "name": "x",
                "sink": "webhook",
                "url": "https://example.com/",
                "scope": {"kind": "everyone"},
            },
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "scope", "kind"]
    finally:
        server.stop()


def test_subscriptions_are_the_owners_and_test_delivery_reports_the_answer(
    napi: ApiServer, receiver: Receiver
) -> None:
    c, stranger = napi.guest(), napi.guest()
    sub = subscribe(c, receiver.url, sink="slack")
    assert sub["secret"] is None  # a Slack URL is its own secret
    assert stranger.get("/api/notifications/subscriptions").json()["items"] == []
    for method, path in (
        ("GET", f"/api/notifications/subscriptions/{sub['id']}"),
        ("PATCH", f"/api/notifications/subscriptions/{sub['id']}"),
        ("DELETE", f"/api/notifications/subscriptions/{sub['id']}"),
        ("POST", f"/api/notifications/subscriptions/{sub['id']}/test"),
    ):
        r = stranger.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    r = c.post(f"/api/notifications/subscriptions/{sub['id']}/test")
    assert r.status_code == 200 and r.json() == {"delivered": True, "status": 200, "error": None}
    slack = receiver.bodies()[-1]
    assert "Test notification" in slack["text"] and slack["blocks"][0]["type"] == "section"
    receiver.script = [418]
    assert c.post(f"/api/notifications/subscriptions/{sub['id']}/test").json()["status"] == 418
    r = c.patch(f"/api/notifications/subscriptions/{sub['id']}", json={"enabled": False, "events": ["nope"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "events"]
    assert c.delete(f"/api/notifications/subscriptions/{sub['id']}").status_code == 204
    assert c.get("/api/notifications/subscriptions").json()["items"] == []


def test_the_outbox_survives_a_restart_of_the_sender(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator_ready: None,
    kube_client: Client,
    firestore_db: firestore.Client,
    receiver: Receiver,
) -> None:
    """A delivery pending when its API process stops, and an event recorded by a process that died
    before fanning it out, are both sent by the next process: nothing is kept only in memory."""
    first = notify_api(firestore_project, namespace, kube, notify_retry_seconds=[2.0])
    c = first.guest()
    me = c.get("/api/me").json()["id"]
    agent = create_agent(c)
    subscribe(c, receiver.url)
    receiver.script = [500]
    name = finish_run(c, kube_client, namespace, agent["id"])
    pending = eventually(
        lambda: [d for d in deliveries(c, "pending") if d["attempts"] == 1] or None,
        timeout=30,
        what="the first attempt recorded",
    )
    first.stop()
    # What a replica that died between recording an event and fanning it out leaves behind.
    orphan = {"id": "ev-orphan", "kind": "run.failed", "userId": me, "title": "Run x failed"}
    orphan |= {"occurredAt": "2026-01-01T00:00:00.000000Z", "fannedOut": False, "agent": agent["id"]}
    firestore_db.collection(Collection.NOTIFY_EVENTS).document("ev-orphan").set(orphan)

    second = notify_api(firestore_project, namespace, kube)
    try:

        def both_sent() -> set[str] | None:
            kinds = {b["kind"] for b in receiver.bodies()[1:]}
            return kinds if kinds == {"run.succeeded", "run.failed"} else None

        eventually(both_sent, timeout=60, what="the pending delivery and the orphan event sent")
        first_ids = [x.headers["webhook-id"] for x in receiver.received if x.json()["execution"] == name]
        assert first_ids == [pending[0]["id"]] * 2, "the retry kept its idempotency key"
    finally:
        second.stop()


def test_a_budget_zone_change_in_the_gateways_records_is_notified_once(
    napi: ApiServer, receiver: Receiver, firestore_db: firestore.Client, namespace: str
) -> None:
    """The gateway writes each call's zone in its record; a change of the owner's zone is notified
    once (a repeat of the same zone is not)."""
    c = napi.guest()
    agent = create_agent(c)
    subscribe(c, receiver.url, events=["budget.zone"])
    calls = firestore_db.collection(Collection.LLM_CALLS)
    for i, (zone, action) in enumerate(
        [("normal", "allow"), ("throttle", "downgrade"), ("throttle", "allow")]
    ):
        record = {"id": f"call-{i}", "ts": time.time() + i * 0.001, "outcome": "ok", "namespace": namespace}
        record |= {"agent": agent["id"], "execution": "r1", "decision": {"zone": zone, "action": action}}
        calls.document(f"call-{i}").set(record)
    eventually(lambda: receiver.received or None, timeout=30, what="budget.zone")
    time.sleep(2.5)  # more passes of the zone watch: no second notice for the same zone
    bodies = receiver.bodies()
    assert [b["kind"] for b in bodies] == ["budget.zone"]
    assert bodies[0]["data"] == {"from": "normal", "to": "throttle"} and bodies[0]["agent"] == agent["id"]
    assert bodies[0]["link"] == "https://agentry.example.com/budgets"
