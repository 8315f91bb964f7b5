"""Notifications' pure parts: the retry schedule, which subscription wants which event, sinks sealed at
rest, the address rule at send time, the Slack rendering, and when approval notices are due."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from agentry_api.services.approvals import timing
from agentry_api.services.notifications.outbox import DEFAULT_KINDS, matches
from agentry_api.services.notifications.sinks import (
    Sink,
    SinkCipher,
    SinkRefused,
    check_url,
    resolve,
    url_hint,
)
from agentry_common.models import ApprovalSpec, OnTimeout
from agentry_common.netaddr import address_problem
from agentry_common.notifications import (
    RETRY_SCHEDULE,
    EventKind,
    Notification,
    new_secret,
    next_delay,
    secret_key,
    signed_headers,
    slack_text,
)
from agentry_common.triggers import verify_generic

pytestmark = pytest.mark.unit


def test_the_default_schedule_is_5s_30s_5min_then_dead() -> None:
    assert RETRY_SCHEDULE == (5.0, 30.0, 300.0)
    assert [next_delay(n) for n in range(5)] == [0.0, 5.0, 30.0, 300.0, None]
    assert next_delay(2, [1.0]) is None and next_delay(1, [1.0]) == 1.0


def sub(**fields: object) -> dict[str, object]:
    return {"id": "sub-1", "userId": "u1", "events": [], "scope": {"kind": "user"}, **fields}


def event(**fields: object) -> dict[str, object]:
    return {"id": "ev-1", "kind": "run.failed", "userId": "u1", "agent": "a", **fields}


def test_matches_kind_owner_and_scope() -> None:
    assert matches(sub(), event())
    assert not matches(sub(), event(userId="u2")), "another user's event"
    assert matches(sub(everyone=True, userId="admin"), event(userId="u2")), "an admin's subscription to all"
    assert not matches(sub(events=["run.succeeded"]), event())
    assert matches(sub(scope={"kind": "agent", "name": "a"}), event())
    assert not matches(sub(scope={"kind": "agent", "name": "b"}), event())
    assert not matches(sub(scope={"kind": "workflow", "name": "w"}), event())
    assert matches(sub(scope={"kind": "workflow", "name": "w"}), event(workflow="w"))
    assert not matches(sub(enabled=False), event())
    assert "approval.escalated" not in DEFAULT_KINDS, "escalations go to their target only"
    assert not matches(sub(), event(kind="approval.escalated", target="sub-2"))
    assert matches(sub(id="sub-2", events=["budget.zone"]), event(kind="approval.escalated", target="sub-2"))


def test_sinks_are_sealed_and_bound_to_their_subscription() -> None:
    cipher = SinkCipher("s" * 32)
    sealed = cipher.seal("sub-1", Sink("https://hooks.example.com/T0/B0/xyz", "whsec_abc"))
    assert "hooks.example.com" not in sealed and "whsec" not in sealed
    assert cipher.open("sub-1", sealed) == Sink("https://hooks.example.com/T0/B0/xyz", "whsec_abc")
    with pytest.raises(ValueError, match="session secret"):
        cipher.open("sub-2", sealed)  # moved to another subscription
    with pytest.raises(ValueError):
        SinkCipher("t" * 32).open("sub-1", sealed)  # another key
    assert url_hint("https://hooks.example.com/T0/B0/xyz") == "https://hooks.example.com/…"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://10.0.0.8/",
        "http://[::ffff:10.0.0.1]/",
    ],
)
def test_private_loopback_and_metadata_addresses_are_refused(url: str) -> None:
    with pytest.raises(SinkRefused, match="notify_allowed_hosts"):
        asyncio.run(resolve(check_url(url), []))


def test_an_admin_may_allow_an_address_a_network_or_a_name() -> None:
    assert asyncio.run(resolve(check_url("http://10.0.0.8:8080/"), ["10.0.0.0/8"])) == [
        ipaddress.ip_address("10.0.0.8")
    ]
    assert asyncio.run(resolve(check_url("http://127.0.0.1/"), ["127.0.0.1"]))
    assert asyncio.run(resolve(check_url("http://localhost/"), ["localhost", "::1/128"]))
    with pytest.raises(SinkRefused):
        asyncio.run(resolve(check_url("http://10.0.0.8/"), ["10.1.0.0/16", "example.com"]))


@pytest.mark.parametrize("url", ["ftp://x.y/", "http://user:pw@x.y/", "not a url", "https:///path"])
def test_urls_that_are_not_http_sinks(url: str) -> None:
    with pytest.raises(SinkRefused):
        check_url(url)


def test_the_address_rule_is_the_http_tools() -> None:
    from agentry_workspace.tools import netpolicy

    assert netpolicy.address_problem is address_problem
    assert address_problem(ipaddress.ip_address("8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("169.254.169.254")) == "the cloud metadata server"


def test_a_webhook_is_signed_the_way_inbound_triggers_verify() -> None:
    secret = new_secret()
    body = b'{"kind":"run.failed"}'
    headers = signed_headers(secret, "dl-1", 1_800_000_000, body, "run.failed")
    assert headers["webhook-id"] == "dl-1" and headers["x-agentry-event"] == "run.failed"
    assert verify_generic(secret_key(secret), body, headers, 1_800_000_010, 300) == (None, "id:dl-1")
    assert verify_generic(secret_key(secret), body + b" ", headers, 1_800_000_010, 300)[0] is not None
    with pytest.raises(ValueError):
        secret_key("not-a-secret")


def test_slack_gets_text_and_a_link() -> None:
    note = Notification(
        id="dl-1",
        event="ev-1",
        kind=EventKind.APPROVAL_WAITING,
        occurredAt="2026-01-01T00:00:00Z",
        userId="u",
        title="Approval waiting: shell in run r",
        message="rm -rf /tmp/x",
        link="https://agentry.example.com/executions/r",
    )
    payload = slack_text(note)
    assert payload["text"] == note.title
    block = payload["blocks"][0]["text"]["text"]
    assert "rm -rf /tmp/x" in block and "<https://agentry.example.com/executions/r|Open in Agentry>" in block


def test_approval_notices_are_due_at_80_percent_and_escalation_at_the_timeout() -> None:
    start, end = "2026-01-01T00:00:00.000000Z", "2026-01-01T01:00:00.000000Z"
    deny = timing(start, end, {"spec": {"approval": {"timeoutSeconds": 3600}}})
    assert deny == {"noticeAt": "2026-01-01T00:48:00.000000Z", "escalateAt": None, "escalateTo": None}
    spec = {"timeoutSeconds": 1800, "onTimeout": "Escalate", "escalation": {"subscription": "sub-a1"}}
    end = "2026-01-01T01:30:00.000000Z"  # the operator's: 1800 + the default 3600 of escalation
    esc = timing(start, end, {"spec": {"approval": spec}})
    assert esc == {
        "noticeAt": "2026-01-01T00:24:00.000000Z",
        "escalateAt": "2026-01-01T00:30:00.000000Z",
        "escalateTo": "sub-a1",
    }


def test_escalate_needs_a_target_and_extends_the_deadline() -> None:
    with pytest.raises(ValueError, match="escalation"):
        ApprovalSpec.model_validate({"onTimeout": "Escalate"})
    spec = ApprovalSpec.model_validate(
        {
            "timeoutSeconds": 600,
            "onTimeout": "Escalate",
            "escalation": {"subscription": "sub-x", "extraSeconds": 120},
        }
    )
    assert spec.on_timeout is OnTimeout.ESCALATE and spec.deadline_seconds == 720
    assert ApprovalSpec(timeout_seconds=600).deadline_seconds == 600


def test_an_unreachable_sink_is_a_failed_attempt_not_an_error() -> None:
    from agentry_api.services.notifications.sinks import post

    async def go() -> object:
        async with httpx.AsyncClient() as client:
            return await post(client, "http://127.0.0.1:9/x", b"{}", {}, ["127.0.0.1"], 1.0)

    attempt = asyncio.run(go())
    assert attempt.ok is False and attempt.error


class Recorded:
    """A stand-in store for Outbox.from_bus: keeps the events it is asked to create."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    async def create_event(self, doc: dict[str, object]) -> bool:
        if any(e["id"] == doc["id"] for e in self.events):
            return False
        self.events.append(doc)
        return True

    async def subscriptions_for(self, user_id: str) -> list[dict[str, object]]:
        return [sub(userId="u")] if user_id == "u" else []

    async def create_delivery(self, doc: dict[str, object]) -> bool:
        return True

    async def mark_fanned_out(self, ev_id: str) -> None:
        return None


def test_which_bus_events_are_notified() -> None:
    from agentry_api.services.notifications.outbox import Outbox

    store = Recorded()
    outbox = Outbox(store, "https://a.example.com/")  # type: ignore[arg-type]
    run = {"action": "status", "execution": "r1", "agentId": "a", "createdAt": "t0"}

    async def go() -> None:
        await outbox.from_bus("u", "execution", {**run, "phase": "Running"})
        await outbox.from_bus("u", "execution", {**run, "phase": "Succeeded"})
        await outbox.from_bus("u", "execution", {**run, "phase": "Succeeded"})  # a repeat: once
        await outbox.from_bus("u", "execution", {**run, "execution": "r2", "phase": "Cancelled"})
        await outbox.from_bus(
            "u", "workflowRun", {"run": {"name": "w-1", "workflow": "w", "phase": "Failed"}}
        )
        await outbox.from_bus("u", "approval", {"action": "requested", "id": "ap", "execution": "r3"})
        await outbox.from_bus("u", "approval", {"action": "decided", "id": "ap", "execution": "r3"})
        paused = {"reason": "ConsecutiveFailures", "message": "3 failed runs in a row"}
        await outbox.from_bus(
            "u", "agent", {"action": "status", "agent": {"id": "a", "status": {"paused": paused}}}
        )
        await outbox.from_bus(
            "u", "agent", {"action": "status", "agent": {"id": "b", "status": {"paused": None}}}
        )

        await outbox.from_bus("v", "execution", {**run, "phase": "Failed"})  # nobody subscribed: not stored

    asyncio.run(go())
    got = [(e["kind"], e.get("execution") or e.get("workflow") or e.get("agent")) for e in store.events]
    assert got == [
        ("run.succeeded", "r1"),
        ("run.failed", "r2"),
        ("run.failed", "w"),
        ("approval.waiting", "r3"),
        ("schedule.paused", "a"),
    ]
    assert store.events[0]["link"] == "https://a.example.com/executions/r1"
    assert store.events[2]["link"] == "https://a.example.com/workflow-runs/w-1"
    assert store.events[4]["link"] == "https://a.example.com/agents/a"
