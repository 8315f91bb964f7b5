"""Approvals, API side: WaitingApproval → approvals document + event → decision (202) appended to
the Execution's spec.approvals; deny keeps the reason; an undecided approval times out."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore
from lightkube import Client

from agentry_api.cluster import Execution
from agentry_api.services.views import iso
from tests.fixtures.helpers import eventually

from .helpers import SseReader, create_agent, request_approval, run, wait_api_phase
from .server import ApiServer

pytestmark = pytest.mark.integration


def decisions(kube_client: Client, namespace: str, name: str) -> list[dict[str, object]]:
    return list(kube_client.get(Execution, name, namespace=namespace).spec.get("approvals") or [])


def is_waiting(event: dict[str, Any], name: str) -> bool:
    data = event["data"]
    return bool(data["kind"] == "execution" and data.get("execution") == name) and (
        data.get("phase") == "WaitingApproval"
    )


def test_approve_is_202_recorded_on_the_execution_and_streamed(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    me = c.get("/api/me").json()["id"]
    agent = create_agent(c)
    stream = SseReader(c)
    stream.next()
    accepted = run(c, agent["id"])
    name = accepted["execution"]
    request_approval(kube_client, namespace, name, f"{name}-ap1")
    waiting = wait_api_phase(c, name, "WaitingApproval")
    assert waiting["approval"]["tool"] == "shell" and waiting["approval"]["risk"] == "RED"

    events = stream.until(lambda e: e["data"]["kind"] == "approval" and e["data"]["action"] == "requested")
    # The approval is announced before the run is shown waiting on it: a client reacting to the
    # WaitingApproval status finds the approval (never a 404).
    early = [e["data"]["seq"] for e in events if is_waiting(e, name)]
    assert early == [], f"the run was streamed as WaitingApproval (seq {early}) before its approval"
    stream.until(lambda e: is_waiting(e, name))
    requested = events[-1]["data"]
    assert requested["id"] == f"{name}-ap1" and requested["execution"] == name
    assert requested["correlationId"] == accepted["correlationId"]
    inbox = c.get("/api/approvals", params={"state": "pending"}).json()["items"]
    assert [a["id"] for a in inbox] == [f"{name}-ap1"]

    r = c.post(f"/api/approvals/{name}-ap1/decision", json={"approved": True, "reason": "looks fine"})
    assert r.status_code == 202 and r.json()["correlationId"] == accepted["correlationId"]
    assert decisions(kube_client, namespace, name) == [
        {"id": f"{name}-ap1", "approved": True, "decidedBy": me, "reason": "looks fine"}
    ]
    decided = stream.until(lambda e: e["data"]["kind"] == "approval" and e["data"]["action"] == "decided")
    assert decided[-1]["data"]["state"] == "approved" and decided[-1]["data"]["decidedBy"] == me
    doc = c.get(f"/api/approvals/{name}-ap1").json()
    assert doc["state"] == "approved" and doc["decidedAt"] and doc["decidedBy"] == me
    # A second decision is refused with who decided first; nothing is appended twice.
    again = c.post(f"/api/approvals/{name}-ap1/decision", json={"approved": False})
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    assert len(decisions(kube_client, namespace, name)) == 1
    stream.close()


def test_deny_keeps_the_reason(api: ApiServer, kube_client: Client, namespace: str) -> None:
    c = api.guest()
    agent = create_agent(c)
    name = run(c, agent["id"])["execution"]
    request_approval(kube_client, namespace, name, f"{name}-ap")
    eventually(lambda: c.get(f"/api/approvals/{name}-ap").status_code == 200, what="approval created")
    r = c.post(f"/api/approvals/{name}-ap/decision", json={"approved": False, "reason": "not on prod"})
    assert r.status_code == 202
    [decision] = decisions(kube_client, namespace, name)
    assert decision["approved"] is False and decision["reason"] == "not on prod"
    assert c.get(f"/api/approvals/{name}-ap").json()["state"] == "denied"
    assert c.post(f"/api/approvals/{name}-ap/decision", json={"approved": "maybe"}).status_code == 422


def test_an_undecided_approval_times_out_as_denied(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    name = run(c, agent["id"])["execution"]
    request_approval(kube_client, namespace, name, f"{name}-late")
    waiting = wait_api_phase(c, name, "WaitingApproval")
    assert c.get(f"/api/approvals/{name}-late").json()["expiresAt"] == iso(waiting["approval"]["expiresAt"])
    # The deadline is at least 60 s away; let the API's clock run out by moving the stored deadline.
    db = firestore.Client(project=api.settings.google_cloud_project)
    [doc_ref] = [d.reference for d in db.collection("approvals").stream()]
    doc_ref.update({"expiresAt": "2020-01-01T00:00:00.000000Z"})
    timeout = {
        "id": f"{name}-late",
        "approved": False,
        "decidedBy": "agentry-api (timeout)",
        "reason": "timeout",
    }
    eventually(lambda: decisions(kube_client, namespace, name) == [timeout], what="the timeout decision")
    doc = c.get(f"/api/approvals/{name}-late").json()
    assert doc["state"] == "expired" and doc["reason"] == "timeout"
    r = c.post(f"/api/approvals/{name}-late/decision", json={"approved": True})
    assert r.status_code == 409
    # The operator cancels the run on that decision, naming it.
    cancelled = wait_api_phase(c, name, "Cancelled")
    assert "timeout" in (cancelled["message"] or "")


def test_a_run_that_ends_closes_its_pending_approval(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    name = run(c, agent["id"])["execution"]
    request_approval(kube_client, namespace, name, f"{name}-ap")
    wait_api_phase(c, name, "WaitingApproval")
    assert c.post(f"/api/executions/{name}/cancel").status_code == 202
    wait_api_phase(c, name, "Cancelled")
    eventually(
        lambda: c.get(f"/api/approvals/{name}-ap").json()["state"] == "expired", what="approval closed"
    )
    doc = c.get(f"/api/approvals/{name}-ap").json()
    assert "ended without a decision" in doc["reason"]
    assert c.get("/api/approvals", params={"state": "pending"}).json()["items"] == []
    assert not decisions(kube_client, namespace, name)  # nothing written to the run
