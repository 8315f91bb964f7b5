"""Events to notify, and their fan-out into the outbox (one delivery per matching subscription).

`record` is called before the change it reports is stored as seen (the event bus's `publish`, the
approvals sweep): a crash before the fan-out is repaired by the dispatcher's sweep of events not yet
fanned out, and a crash before the record makes the watcher repeat the change. Ids come from what the
event is about, so repeats and two replicas create each event and each delivery once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agentry_common.models import Phase
from agentry_common.notifications import DeliveryState, EventKind, Notification
from agentry_common.workflows import RunPhase

from ...storage import Store, now_iso
from ...storage.notifications import delivery_id, event_id
from ..workflow_feed import KIND as WORKFLOW_RUN

log = logging.getLogger("agentry.api.notifications")
Doc = dict[str, Any]
# What a subscription gets when it names no kinds: every kind except escalations (sent to one target).
DEFAULT_KINDS = tuple(k.value for k in EventKind if k is not EventKind.APPROVAL_ESCALATED)
ENDED = {Phase.SUCCEEDED.value: EventKind.RUN_SUCCEEDED, Phase.FAILED.value: EventKind.RUN_FAILED}
ENDED[Phase.CANCELLED.value] = EventKind.RUN_FAILED


def matches(sub: Doc, event: Doc) -> bool:
    """Whether a subscription wants this event: its kind, and its scope (agent, workflow, all)."""
    if sub.get("enabled") is False or sub.get("deleted"):
        return False
    if event.get("target"):  # an escalation goes to the subscription the Agent names, only
        return bool(sub.get("id") == event["target"])
    if event["kind"] not in (sub.get("events") or DEFAULT_KINDS):
        return False
    if not sub.get("everyone") and sub.get("userId") != event["userId"]:
        return False
    scope = sub.get("scope") or {}
    if scope.get("kind") == "agent":
        return bool(event.get("agent") and event["agent"] == scope.get("name"))
    if scope.get("kind") == "workflow":
        return bool(event.get("workflow") and event["workflow"] == scope.get("name"))
    return True


class Outbox:
    def __init__(self, store: Store, public_url: str | None) -> None:
        self.store = store
        self.public_url = (public_url or "").rstrip("/")
        self.kick = asyncio.Event()  # set when deliveries were created: the dispatcher looks at once

    def link(self, path: str) -> str:
        return self.public_url + path

    async def record(self, key: str, kind: EventKind, user_id: str, title: str, **fields: Any) -> Doc:
        """Store the event once (by `key`) and fan it out; the event's document. An event no
        subscription wants is not stored."""
        doc: Doc = {
            "id": event_id(key),
            "kind": kind.value,
            "userId": user_id,
            "title": title,
            "occurredAt": now_iso(),
            "fannedOut": False,
            **{k: v for k, v in fields.items() if v is not None},
        }
        subs = await self.subscribers(doc)
        if subs and await self.store.create_event(doc):
            await self.fan_out(doc, subs)
        return doc

    async def subscribers(self, event: Doc) -> list[Doc]:
        """The subscriptions that want the event."""
        if event.get("target"):
            target = await self.store.subscription(str(event["target"]))
            # The Agent names one of its owner's subscriptions (or an admin's for everyone): never a
            # stranger's sink.
            mine = target is not None and (target.get("userId") == event["userId"] or target.get("everyone"))
            subs = [target] if target is not None and mine else []
        else:
            subs = await self.store.subscriptions_for(event["userId"])
        return [sub for sub in subs if matches(sub, event)]

    async def fan_out(self, event: Doc, subs: list[Doc] | None = None) -> int:
        """A delivery for every subscription that wants the event (once each); then marked done."""
        wanted = [
            delivery_doc(event, sub) for sub in (await self.subscribers(event) if subs is None else subs)
        ]
        created = sum(await asyncio.gather(*(self.store.create_delivery(doc) for doc in wanted)))
        await self.store.mark_fanned_out(event["id"])
        if created:
            self.kick.set()
        return created

    async def sweep(self) -> int:
        """Fan out the events a crashed replica recorded but did not fan out."""
        done = 0
        for event in await self.store.unfanned_events():
            done += await self.fan_out(event)
        return done

    # -- the event bus's events that are notified -----------------------------------------------

    async def from_bus(self, user_id: str, kind: str, data: Doc) -> None:
        """Called by `EventBus.publish` before the event is appended: run ends, approvals waiting,
        schedules paused by the operator become notification events."""
        if kind == "execution" and data.get("action") == "status" and data.get("phase") in ENDED:
            await self._run_ended(user_id, data)
        elif kind == WORKFLOW_RUN and (data.get("run") or {}).get("phase") in (
            RunPhase.SUCCEEDED,
            RunPhase.FAILED,
        ):
            await self._workflow_ended(user_id, data["run"])
        elif kind == "approval" and data.get("action") == "requested":
            await self._approval_waiting(user_id, data)
        elif kind == "agent" and data.get("action") == "status":
            agent = data.get("agent") or {}
            paused = (agent.get("status") or {}).get("paused")
            if paused:
                await self._schedule_paused(user_id, agent, paused)

    async def _run_ended(self, user_id: str, data: Doc) -> None:
        name, phase = data["execution"], data["phase"]
        await self.record(
            f"run:{name}:{data.get('createdAt')}:{phase}",
            ENDED[phase],
            user_id,
            f"Run {name} of {data.get('agentId')} {phase.lower()}",
            agent=data.get("agentId"),
            execution=name,
            phase=phase,
            reason=data.get("reason"),
            message=(data.get("message") or "")[:1000] or None,
            link=self.link(f"/executions/{name}"),
            data={"correlationId": data.get("correlationId"), "duration": data.get("duration")},
        )

    async def _workflow_ended(self, user_id: str, run: Doc) -> None:
        name, phase = run.get("name"), run.get("phase")
        await self.record(
            f"wfr:{name}:{run.get('startTime')}:{phase}",
            EventKind.RUN_SUCCEEDED if phase == RunPhase.SUCCEEDED else EventKind.RUN_FAILED,
            user_id,
            f"Workflow run {name} of {run.get('workflow')} {str(phase).lower()}",
            workflow=run.get("workflow"),
            phase=phase,
            message=(run.get("message") or "")[:1000] or None,
            link=self.link(f"/workflow-runs/{name}"),
            data={"workflowRun": name},
        )

    async def _approval_waiting(self, user_id: str, data: Doc) -> None:
        await self.record(
            f"approval:{data['id']}:waiting",
            EventKind.APPROVAL_WAITING,
            user_id,
            f"Approval waiting: {data.get('tool') or 'an action'} in run {data.get('execution')}",
            agent=data.get("agentId"),
            execution=data.get("execution"),
            approval=data["id"],
            message=data.get("summary"),
            link=self.link(f"/executions/{data.get('execution')}"),
            data={"risk": data.get("risk"), "expiresAt": data.get("expiresAt")},
        )

    async def _schedule_paused(self, user_id: str, agent: Doc, paused: Doc) -> None:
        # Once per pause: a resumed schedule gets a fresh scheduleState (its `since`).
        since = ((agent.get("status") or {}).get("scheduleState") or {}).get("since")
        await self.record(
            f"paused:{agent.get('id')}:{since}:{paused.get('reason')}",
            EventKind.SCHEDULE_PAUSED,
            user_id,
            f"Schedule of {agent.get('id')} paused",
            agent=agent.get("id"),
            reason=paused.get("reason"),
            message=paused.get("message"),
            link=self.link(f"/agents/{agent.get('id')}"),
        )


def delivery_doc(event: Doc, sub: Doc) -> Doc:
    now = now_iso()
    ident = delivery_id(event["id"], str(sub["id"]))
    note = Notification(
        id=ident,
        event=event["id"],
        kind=EventKind(event["kind"]),
        occurredAt=event["occurredAt"],
        userId=event["userId"],
        title=event["title"],
        **{k: event.get(k) for k in ("agent", "workflow", "execution", "approval", "phase", "reason")},
        message=event.get("message"),
        link=event.get("link"),
        data=event.get("data") or {},
    )
    return {
        "id": ident,
        "event": event["id"],
        "subscription": sub["id"],
        "subscriptionName": sub.get("name"),
        "userId": sub["userId"],  # the subscriber's: whose list shows it, who may redeliver it
        "kind": event["kind"],
        "title": event["title"],
        "notification": note.model_dump(mode="json"),
        "state": DeliveryState.PENDING.value,
        "attempts": 0,
        "nextAt": now,
        "lastError": None,
        "lastStatus": None,
        "createdAt": now,
        "updatedAt": now,
    }
