"""Issue 18, "safe for strangers": attacks on the real API (uvicorn, the Firestore emulator, the real
kube-apiserver and operator), each refused. Quotas set low here; everything else as in the suite."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from lightkube import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from agentry_api.auth import owner_label
from agentry_common import constants as c
from agentry_common.resources import Agent, Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually

from .helpers import AGENT, SseReader, create_agent, run
from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
LIMITS = {
    "guest_mints_per_hour": 4,
    "guest_quota_agents": 1,
    "guest_quota_scheduled_agents": 0,
    "guest_quota_concurrent_runs": 1,
    "guest_quota_chat_conversations": 1,
    "guest_quota_streams": 1,
    "guest_quota_tokens": 1,
    "quota_runs_per_day": 1,
    "quota_concurrent_runs": 5,
}
SCHEDULED: dict[str, Any] = {
    "name": "Scheduled",
    "spec": {
        "instructions": "Summarise the news.",
        "model": {"name": "claude-sonnet-4-5"},
        "schedule": {"cron": "0 8 * * 1"},
    },
}


@pytest.fixture
def strict_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[ApiServer]:
    # No watcher: a run stays Pending in Firestore, so "concurrent" does not race the operator.
    settings = api_settings(firestore_project, namespace, str(kube.kubeconfig), watch=False, **LIMITS)
    yield from serve(settings)


def db(api: ApiServer) -> firestore.Client:
    return firestore.Client(project=api.settings.google_cloud_project)


def owned(api: ApiServer, collection: str, user_id: str) -> list[dict[str, Any]]:
    q = db(api).collection(collection).where(filter=FieldFilter("userId", "==", user_id))
    return [d.to_dict() or {} for d in q.stream()]


def refused(r: httpx.Response, limit: str, retry_after: bool) -> dict[str, Any]:
    """A 429 naming the quota, with the error body's reason and correlation id."""
    assert r.status_code == 429, r.text
    body: dict[str, Any] = r.json()
    assert body["reason"] == "OverQuota" and body["limit"] == limit, body
    assert body["correlationId"] == r.headers["x-request-id"]
    assert ("retry-after" in r.headers) is retry_after, r.headers
    if retry_after:
        assert int(r.headers["retry-after"]) > 0
    return body


def test_a_guest_flood_from_one_client_is_refused(strict_api: ApiServer) -> None:
    api = strict_api
    codes = [api.client().post("/api/session/guest").status_code for _ in range(12)]
    assert codes == [201] * 4 + [429] * 8, codes
    r = api.client().post("/api/session/guest")
    refused(r, "guest_sessions", retry_after=True)
    assert "agentry_session" not in r.headers.get("set-cookie", "")
    # The dashboard's first visit mints guests the same way: refused too, and no cookie.
    page = api.client().get("/")
    assert page.status_code == 429 and "agentry_session" not in page.headers.get("set-cookie", "")
    guests = [d for d in db(api).collection("users").stream() if (d.to_dict() or {}).get("kind") == "guest"]
    assert len(guests) == 4


def test_over_quota_agents_runs_streams_and_chats_are_429_with_nothing_created(
    strict_api: ApiServer, kube_client: Client, namespace: str
) -> None:
    api = strict_api
    g = api.guest()
    me = g.get("/api/me").json()["id"]
    agent = create_agent(g)
    # A second agent: 429, no document, no CR. (Counts only go down when the user deletes: no Retry-After.)
    body = refused(g.post("/api/agents", json={**AGENT, "name": "Second"}), "agents", retry_after=False)
    assert body["allowed"] == 1
    assert len(owned(api, "agents", me)) == 1
    assert [a.metadata.name for a in kube_client.list(Agent, namespace=namespace) if a.metadata] == [
        agent["id"]
    ]
    # Guests may not schedule: neither on create nor by editing a schedule in.
    h = api.guest()
    refused(h.post("/api/agents", json=SCHEDULED), "scheduled_agents", retry_after=False)
    assert owned(api, "agents", h.get("/api/me").json()["id"]) == []
    refused(g.put(f"/api/agents/{agent['id']}", json=SCHEDULED), "scheduled_agents", retry_after=False)
    assert g.get(f"/api/agents/{agent['id']}").json()["spec"].get("schedule") is None

    # One run at a time: the second is 429 (Retry-After: a run ending frees the slot); one Execution.
    first = run(g, agent["id"])
    refused(g.post(f"/api/agents/{agent['id']}/runs", json={}), "concurrent_runs", retry_after=True)
    assert [e.metadata.name for e in kube_client.list(Execution, namespace=namespace) if e.metadata] == [
        first["execution"]
    ]
    assert len(owned(api, "executions", me)) == 1

    # One event stream: the second is 429; closing the first gives the slot back.
    stream = SseReader(g)
    assert stream.status == 200
    assert stream.next()["event"] == "snapshot"
    refused(g.get("/api/events", headers={"Accept": "text/event-stream"}), "streams", retry_after=True)
    stream.close()

    def reopened() -> bool:
        again = SseReader(g)
        again.close()
        return again.status == 200

    eventually(reopened, timeout=20, what="the stream slot to be given back")

    # One conversation: a second new one is closed with 4429 and nothing stored.
    cookie = {"Cookie": f"agentry_session={g.cookies['agentry_session']}"}
    chat = api.url.replace("http", "ws") + "/api/chat"
    with ws_connect(chat, additional_headers=cookie) as ws:
        import json

        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    with pytest.raises(ConnectionClosed) as closed, ws_connect(chat, additional_headers=cookie) as ws:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert len(owned(api, "conversations", me)) == 1

    # One API token: a second is 429, none stored; revoking the first frees the slot.
    token = g.post("/api/tokens", json={"name": "one"}).json()
    refused(g.post("/api/tokens", json={"name": "two"}), "tokens", retry_after=False)
    assert [t["name"] for t in owned(api, "tokens", me)] == ["one"]
    assert g.delete(f"/api/tokens/{token['id']}").status_code == 204
    assert g.post("/api/tokens", json={"name": "two"}).status_code == 201


def test_runs_per_day_of_a_signed_in_user(strict_api: ApiServer, kube_client: Client, namespace: str) -> None:
    admin = strict_api.client(headers=ADMIN)
    agent = create_agent(admin)
    run(admin, agent["id"])
    r = admin.post(f"/api/agents/{agent['id']}/runs", json={})
    refused(r, "runs_per_day", retry_after=True)
    assert int(r.headers["retry-after"]) <= 86401  # the next UTC day
    assert len(list(kube_client.list(Execution, namespace=namespace))) == 1


def test_signed_out_revoked_and_expired_credentials_are_refused(api: ApiServer) -> None:
    # Signing out ends the session on the server: a copy of the cookie (stolen) stops working too.
    g = api.guest()
    stolen = api.client(cookies={"agentry_session": g.cookies["agentry_session"]})
    assert stolen.get("/api/me").status_code == 200
    assert g.delete("/api/session").status_code == 204
    assert stolen.get("/api/me").status_code == 401

    # Revoking a token ends the browser sessions it opened, and the token.
    owner = api.guest()
    token = owner.post("/api/tokens", json={"name": "laptop"}).json()
    browser = api.client()
    assert browser.post("/api/session/token", json={"token": token["token"]}).status_code == 200
    assert browser.get("/api/me").status_code == 200
    assert owner.delete(f"/api/tokens/{token['id']}").status_code == 204
    assert browser.get("/api/me").status_code == 401
    assert api.client(headers={"Authorization": f"Bearer {token['token']}"}).get("/api/me").status_code == 401

    # Tokens may expire: refused once past expiresAt; lastUsedAt is written while used.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    short = owner.post("/api/tokens", json={"name": "short", "expiresAt": soon.isoformat()})
    assert short.status_code == 201 and short.json()["expiresAt"].startswith(soon.strftime("%Y-%m-%dT%H:%M"))
    bearer = api.client(headers={"Authorization": f"Bearer {short.json()['token']}"})
    assert bearer.get("/api/me").status_code == 200
    listed = {t["id"]: t for t in owner.get("/api/tokens").json()["items"]}
    assert listed[short.json()["id"]]["lastUsedAt"] is not None
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    r = bearer.get("/api/me")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=4000)
    for when in (past, far):
        assert owner.post("/api/tokens", json={"name": "x", "expiresAt": when.isoformat()}).status_code == 422

    # The store keeps sessions by a hash: no session id (what a cookie carries) is readable there.
    session_id = api.state.sessions.load(owner.cookies["agentry_session"])
    stored = [(d.id, d.to_dict() or {}) for d in db(api).collection("sessions").stream()]
    assert session_id and stored and all(session_id not in f"{i} {s}" for i, s in stored)


def test_errors_say_why_with_a_correlation_id_and_never_exception_text(api: ApiServer) -> None:
    c = api.guest()
    cases = [
        (api.client().get("/api/agents"), 401, "Unauthorized"),
        (c.get("/api/agents/nope"), 404, "NotFound"),
        (c.get("/api/executions/nope/logs"), 404, "NotFound"),
        (c.get("/api/agents?cursor=xyz"), 422, "Invalid"),
        (c.get("/api/agents?limit=1000"), 422, "Invalid"),
        (c.post("/api/agents", json={"name": "x", "spec": {"owner": "me"}}), 422, "Invalid"),
        (c.get("/api/agents", headers={"Host": "rebind.attacker.example"}), 400, "UnknownHost"),
    ]
    for r, code, reason in cases:
        assert r.status_code == code, r.text
        body = r.json()
        assert body["reason"] == reason and body["correlationId"] == r.headers["x-request-id"], body
        for leak in ("Traceback", "Exception", "Error:", "google.", "lightkube", 'File "'):
            assert leak not in r.text, r.text


def test_pages_and_answers_carry_security_headers(api: ApiServer) -> None:
    c = api.client()
    page = c.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in page.headers  # plain http here (cookie_secure off)
    assert c.get("/api/me").headers["content-security-policy"].startswith("default-src 'none'")


def test_lists_are_paginated(api: ApiServer) -> None:
    c = api.guest()
    for i in range(3):
        assert c.post("/api/tokens", json={"name": f"t{i}"}).status_code == 201
    first = c.get("/api/tokens?limit=2").json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = c.get(f"/api/tokens?limit=2&cursor={first['nextCursor']}").json()
    assert len(rest["items"]) == 1 and rest["nextCursor"] is None
    for path in ("/api/agents", "/api/approvals", "/api/conversations", "/api/executions"):
        assert c.get(f"{path}?limit=101").status_code == 422, path
        assert "nextCursor" in c.get(f"{path}?limit=1").json(), path


def test_an_execution_reusing_a_pruned_runs_name_is_not_mirrored_into_its_owner(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    alice, mallory = api.guest(), api.guest()
    alice_agent = create_agent(alice)
    name = run(alice, alice_agent["id"])["execution"]
    stored = db(api).collection("executions").document(name)
    eventually(lambda: (stored.get().to_dict() or {}).get("uid"), timeout=40, what="the run mirrored")
    uid = (stored.get().to_dict() or {})["uid"]
    # The cluster prunes Alice's run; Mallory creates an Execution of that name for her own agent.
    kube_client.delete(Execution, name, namespace=namespace)
    eventually(
        lambda: not list(kube_client.list(Execution, namespace=namespace)), timeout=30, what="the prune"
    )
    mallory_agent = create_agent(mallory, name="Mallory agent")
    # Labelled for Mallory, as a run of her Agent must be (the run gate; docs/security.md).
    labels = {c.LABEL_OWNER: owner_label(mallory.get("/api/me").json()["id"])}
    kube_client.create(
        Execution.from_dict(
            {
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {"agentRef": {"name": mallory_agent["id"]}, "input": "mallory was here"},
            }
        )
    )
    eventually(
        lambda: (kube_client.get(Execution, name, namespace=namespace).status or {}).get("phase"),
        timeout=40,
        what="the operator to take Mallory's Execution",
    )
    time.sleep(3)  # the watcher has seen it (it polls nothing: the watch event came with the status)
    after = stored.get().to_dict() or {}
    assert after["userId"] == alice.get("/api/me").json()["id"] and after["agentId"] == alice_agent["id"]
    assert after["uid"] == uid and after.get("input") != "mallory was here"
    assert mallory.get(f"/api/executions/{name}").status_code == 404


def test_a_deleted_account_loses_its_sessions_tokens_and_agents(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    """DELETE /api/me (yourself) and DELETE /api/users/{id} (administrators only): every credential
    of the user stops working at once, and their dashboard agents leave the cluster."""
    g = api.guest()
    agent = create_agent(g)["id"]
    eventually(lambda: kube_client.get(Agent, agent, namespace=namespace), 30, "the Agent CR")
    token = g.post("/api/tokens", json={"name": "t"}).json()["token"]
    bearer = api.client(headers={"Authorization": f"Bearer {token}"})
    assert bearer.get("/api/me").status_code == 200
    assert bearer.delete("/api/me").status_code == 204
    assert g.get("/api/me").status_code == 401
    assert bearer.get("/api/me").status_code == 401
    eventually(
        lambda: agent not in {a.metadata.name for a in kube_client.list(Agent, namespace=namespace)},  # type: ignore[union-attr]
        30,
        "the deleted user's Agent CR to go",
    )

    other, bystander = api.guest(), api.guest()
    other_id = other.get("/api/me").json()["id"]
    r = bystander.delete(f"/api/users/{other_id}")
    assert r.status_code == 403 and "administrator" in r.text, r.text
    assert other.get("/api/me").status_code == 200
    admin = api.client(headers=ADMIN)
    assert admin.delete("/api/users/no-such-user").status_code == 404
    assert admin.delete(f"/api/users/{other_id}").status_code == 204
    assert other.get("/api/me").status_code == 401
    assert bystander.get("/api/me").status_code == 200
