"""Approvals that reach a person: a waiting approval is notified at once with a link to the run's page;
"about to expire" and the escalation of an Agent that says Escalate are sent by the approvals sweep
(each once); the operator's deadline includes the escalation's time."""
# ruff: noqa: F811  (the notifying API fixture `napi`, imported from tests/integration/api/test_notifications.py)

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from google.cloud import firestore
from lightkube import Client

from agentry_api.cluster import Execution
from agentry_api.storage.base import key_id
from agentry_common.records import Collection
from tests.fixtures.helpers import eventually
from tests.fixtures.notify_receiver import Receiver

from .helpers import create_agent, request_approval, run, wait_api_phase
from .server import ApiServer
from .test_notifications import napi, subscribe  # noqa: F401  (napi: the notifying API fixture)

pytestmark = pytest.mark.integration


def kinds(receiver: Receiver) -> list[str]:
    return [b["kind"] for b in receiver.bodies()]


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_waiting_expiring_and_escalated(
    napi: ApiServer, kube_client: Client, namespace: str, firestore_db: firestore.Client
) -> None:
    person, lead = Receiver(), Receiver()
    try:
        c = napi.guest()
        subscribe(c, person.url, events=["approval.waiting", "approval.expiring"])
        escalation = subscribe(c, lead.url, name="lead", events=["approval.escalated"])
        approval: dict[str, Any] = {"timeoutSeconds": 600, "onTimeout": "Escalate"}
        approval["escalation"] = {"subscription": escalation["id"], "extraSeconds": 300}
        spec = {"instructions": "x", "model": {"name": "m"}, "tools": ["shell"], "approval": approval}
        agent = create_agent(c, spec=spec)
        name = run(c, agent["id"])["execution"]
        request_approval(kube_client, namespace, name, f"{name}-ap")
        wait_api_phase(c, name, "WaitingApproval")

        eventually(lambda: kinds(person) == ["approval.waiting"] or None, timeout=30, what="approval.waiting")
        waiting = person.bodies()[0]
        assert waiting["approval"] == f"{name}-ap" and waiting["execution"] == name
        assert waiting["link"] == f"https://agentry.example.com/executions/{name}"
        assert lead.received == [], "the escalation target hears only of escalations"

        # The operator gives the escalation's time: the approval is denied 600 + 300 s after the pause
        # (which the operator saw a moment after the runtime's request).
        status = kube_client.get(Execution, name, namespace=namespace).status or {}
        pending = status["approval"]
        assert 900 <= (parse(pending["expiresAt"]) - parse(pending["requestedAt"])).total_seconds() < 960

        ref = firestore_db.collection(Collection.APPROVALS).document(key_id(f"{name}-ap"))
        doc = ref.get().to_dict() or {}
        requested = parse(doc["requestedAt"])
        assert (parse(doc["noticeAt"]) - requested).total_seconds() == pytest.approx(480)  # 80% of 600
        assert (parse(doc["escalateAt"]) - requested).total_seconds() == pytest.approx(600)
        assert doc["escalateTo"] == escalation["id"]
        # Time passes (the sweep compares with the clock): both moments are now behind us.
        past = "2026-01-01T00:00:00.000000Z"
        ref.update({"noticeAt": past, "escalateAt": past})

        eventually(lambda: "approval.expiring" in kinds(person) or None, timeout=30, what="approval.expiring")
        eventually(lambda: kinds(lead) == ["approval.escalated"] or None, timeout=30, what="the escalation")
        escalated = lead.bodies()[0]
        assert escalated["approval"] == f"{name}-ap" and escalated["link"].endswith(f"/executions/{name}")
        after = ref.get().to_dict() or {}
        assert after["state"] == "pending" and after["noticeAt"] is None and after["escalateAt"] is None
        r = c.get("/api/notifications/deliveries").json()["items"]
        assert sorted(d["kind"] for d in r) == ["approval.escalated", "approval.expiring", "approval.waiting"]
        assert kinds(person) == ["approval.waiting", "approval.expiring"], "each notice once"
    finally:
        person.close()
        lead.close()


def test_an_escalation_never_reaches_a_strangers_subscription(
    napi: ApiServer, kube_client: Client, namespace: str, firestore_db: firestore.Client
) -> None:
    theirs = Receiver()
    try:
        stranger, c = napi.guest(), napi.guest()
        foreign = subscribe(stranger, theirs.url, events=["approval.escalated"])
        approval = {"onTimeout": "Escalate", "escalation": {"subscription": foreign["id"]}}
        spec = {"instructions": "x", "model": {"name": "m"}, "tools": ["shell"], "approval": approval}
        agent = create_agent(c, spec=spec)
        name = run(c, agent["id"])["execution"]
        request_approval(kube_client, namespace, name, f"{name}-ap")
        wait_api_phase(c, name, "WaitingApproval")
        ref = firestore_db.collection(Collection.APPROVALS).document(key_id(f"{name}-ap"))
        eventually(lambda: (ref.get().to_dict() or {}).get("escalateAt"), timeout=30, what="the approval")
        ref.update({"escalateAt": "2026-01-01T00:00:00.000000Z"})
        eventually(
            lambda: (ref.get().to_dict() or {}).get("escalateAt") is None or None, timeout=30, what="sweep"
        )
        assert list(firestore_db.collection(Collection.NOTIFY_DELIVERIES).stream()) == []
        assert theirs.received == []
    finally:
        theirs.close()
