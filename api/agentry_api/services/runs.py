"""Runs and executions: create an Execution CR (202), mirror its status, cancel, logs."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import uuid
from typing import Any

from lightkube import ApiError

from agentry_common import tracing
from agentry_common.models import TERMINAL_PHASES, Phase, Trigger, looks_like_secret
from agentry_common.naming import scheduled_execution_name

from ..auth import User, owner_label
from ..cluster import Cluster, ClusterUnavailable, api_message, random_suffix
from ..storage import Store, now_iso
from .agents import AgentService
from .approvals import ApprovalService
from .errors import Conflict, Invalid, NotFound, Unavailable
from .events import EventBus
from .views import execution_event, execution_view, iso, parent_of

log = logging.getLogger("agentry.api.runs")
Doc = dict[str, Any]
TERMINAL = {p.value for p in TERMINAL_PHASES}
_TRACER = tracing.tracer("agentry.api.runs")


def encode_cursor(doc: Doc) -> str:
    raw = json.dumps([doc.get("createdAt", ""), doc["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Invalid(["query", "cursor"], "cursor is not one this API returned") from exc
    if not isinstance(created, str) or not isinstance(ident, str):
        raise Invalid(["query", "cursor"], "cursor is not one this API returned")
    return created, ident


class RunService:
    def __init__(
        self, store: Store, cluster: Cluster, bus: EventBus, agents: AgentService, approvals: ApprovalService
    ) -> None:
        self.store, self.cluster, self.bus = store, cluster, bus
        self.agents, self.approvals = agents, approvals

    async def run(
        self,
        user: User,
        agent_id: str,
        input_text: str | None,
        *,
        trigger: Trigger = Trigger.API,
        parent: str | None = None,
        root: str | None = None,
    ) -> Doc:
        """Start a run of the user's agent; `parent`: a follow-up of that run (services/follow_ups.py
        checks it first), `root` the first run of their thread. The field of `input_text` is `input`
        (a follow-up's: `message`)."""
        agent = await self.agents.get(user, agent_id)
        field = "message" if parent else "input"
        if input_text and looks_like_secret(input_text):
            raise Invalid(
                ["body", field], f"{field} contains what looks like an API key; use the agent's secrets"
            )
        sync = (agent.get("sync") or {}).get("state", "Synced")
        if sync != "Synced":
            raise Conflict(
                f"agent {agent_id!r} is not in the cluster yet (sync {sync}: "
                f"{(agent.get('sync') or {}).get('message', '')}); try again shortly"
            )
        correlation_id = uuid.uuid4().hex
        name = f"{agent_id[:50]}-{random_suffix(6)}"
        doc = accepted_doc(name, user.id, agent_id, trigger, correlation_id, input_text)
        if parent:
            doc["parent"], doc["root"] = parent, root or parent
        exists = await self._start(doc, user.owner_label, user.id, parent=parent)
        if exists is not None:  # another run has the name drawn
            await self.store.delete_execution(name)
            raise Conflict(f"the cluster refused the run: {api_message(exists)}")
        log.info(
            "run %s of %s accepted correlation_id=%s%s",
            name,
            agent_id,
            correlation_id,
            f" continuing {parent}" if parent else "",
        )
        return doc

    async def run_scheduled(self, agent_id: str, scheduled: dt.datetime) -> Doc:
        """A schedule tick (Cloud Scheduler): an Execution with trigger Schedule, owned by the Agent's owner.

        The name comes from the tick, so a retried tick finds the Execution it already created and
        returns it (idempotent). The Agent is found by name without a user (Firestore, else the CR).
        """
        agent = await self._scheduled_agent(agent_id)
        when = scheduled.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = scheduled_execution_name(agent_id, int(scheduled.timestamp()))
        existing = await self.store.execution(name)
        if existing is not None:
            if existing.get("agentId") != agent_id:
                raise Conflict(f"execution {name!r} exists and belongs to another agent")
            return existing
        # Deterministic, so concurrent retries of one tick write the same document.
        correlation_id = hashlib.sha256(f"schedule:{self.cluster.namespace}/{name}".encode()).hexdigest()[:32]
        doc = accepted_doc(name, agent["userId"], agent_id, Trigger.SCHEDULE, correlation_id, None)
        doc["scheduledTime"] = when
        exists = await self._start(doc, owner_label(agent["userId"]), agent["userId"], scheduled_time=when)
        if exists is not None:
            return await self._tick_created_before(doc, exists)
        log.info(
            "scheduled run %s of %s (tick %s) accepted correlation_id=%s",
            name,
            agent_id,
            when,
            correlation_id,
        )
        return doc

    async def run_triggered(self, agent_id: str, owner: str, input_text: str, name: str) -> Doc:
        """A trigger's delivery (services/hooks.py): an Execution with trigger Webhook, labelled for the
        trigger's `owner`, named by the delivery (a copy meets 409 and gets the same run). The run gate
        decides whether that owner may run the Agent, as for every run; the run is stored for the
        Agent's owner only when that is whom the label names (else the watcher mirrors it as usual)."""
        if looks_like_secret(input_text):
            raise Invalid(["body"], "the mapped input contains what looks like an API key; not started")
        agent = await self._scheduled_agent(agent_id)
        correlation_id = hashlib.sha256(f"webhook:{self.cluster.namespace}/{name}".encode()).hexdigest()[:32]
        user_id = agent["userId"] if owner_label(agent["userId"]) == owner else None
        doc = accepted_doc(name, user_id or "", agent_id, Trigger.WEBHOOK, correlation_id, input_text)
        if await self._start(doc, owner, user_id) is not None:
            return doc  # the same delivery's run, created by a concurrent copy
        log.info("triggered run %s of %s accepted correlation_id=%s", name, agent_id, correlation_id)
        return doc

    async def _start(self, doc: Doc, owner: str, user_id: str | None, **kw: Any) -> ApiError | None:
        """Store the accepted `doc` for `user_id` (None: not stored; the watcher mirrors the run), create
        its Execution labelled for `owner`, publish `accepted`. A failed create takes the document back
        and raises, except a 409 (the name exists): returned, for the caller to judge."""
        name = doc["id"]
        if user_id:
            await self.store.put_execution(doc)
        try:
            await self._create(
                name,
                doc["agentId"],
                doc["input"],
                doc["correlationId"],
                owner,
                trigger=Trigger(doc["trigger"]),
                **kw,
            )
        except (ClusterUnavailable, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status.code == 409:
                return exc
            if user_id:
                await self.store.delete_execution(name)
            if isinstance(exc, ClusterUnavailable):
                raise Unavailable(
                    "the run was not started: the cluster is unavailable (retry shortly)"
                ) from exc
            raise Conflict(f"the cluster refused the run: {api_message(exc)}") from exc
        if user_id:
            event = execution_event(doc, "accepted")
            await self.bus.publish(user_id, "execution", event, dedupe_key=f"ex:{name}:accepted")
        return None

    async def _create(
        self, name: str, agent_id: str, input_text: str | None, correlation_id: str, owner: str, **kw: Any
    ) -> None:
        """Create the Execution CR in a span; the run's trace continues from it (operator, pod,
        gateway) through its traceparent annotation. Tracing off: no annotation, a plain create."""
        with tracing.span(
            _TRACER, tracing.SPAN_CREATE_EXECUTION, run_attributes(name, agent_id, correlation_id)
        ):
            traced = tracing.trace_annotations()
            if traced:
                kw["annotations"] = traced
            await self.cluster.create_execution(name, agent_id, input_text, correlation_id, owner, **kw)

    async def _scheduled_agent(self, agent_id: str) -> Doc:
        agent = await self.store.agent(agent_id)
        if agent is None:  # not imported yet (kubectl): as the watcher would
            found = await self.cluster.get_agent(agent_id)
            agent = await self.agents.import_cr(found) if found is not None else None
        if agent is None or agent.get("deleted"):
            raise NotFound(f"agent {agent_id!r} not found")
        return agent

    async def _tick_created_before(self, doc: Doc, exc: ApiError) -> Doc:
        """The cluster has this tick's Execution already (created by a retry): mirror and return it."""
        name, agent_id = doc["id"], doc["agentId"]
        cr = await self.cluster.get_execution(name)
        spec = (cr or {}).get("spec") or {}
        if cr is None or (spec.get("agentRef") or {}).get("name") != agent_id:
            await self.store.delete_execution(name)
            raise Conflict(f"execution {name!r} exists in the cluster for another agent") from exc
        cr_correlation = spec.get("correlationId") or (cr.get("status") or {}).get("correlationId")
        if cr_correlation and cr_correlation != doc["correlationId"]:
            doc["correlationId"] = cr_correlation
            await self.store.put_execution({"id": name, "correlationId": cr_correlation}, merge=True)
        # Our write may have replaced the watcher's mirror of it: mirror the CR again.
        return await self.observe("MODIFIED", cr) or doc

    async def get(self, user: User, name: str) -> Doc:
        doc = await self.store.owned_execution(user.id, name)
        if doc is None:
            raise NotFound(f"execution {name!r} not found")
        return doc

    async def list(
        self, user: User, agent_id: str | None, phase: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Doc], str | None]:
        after = decode_cursor(cursor) if cursor else None
        docs = await self.store.list_executions(
            user.id, agent_id=agent_id, phase=phase, limit=limit + 1, after=after
        )
        more = len(docs) > limit
        docs = docs[:limit]
        return docs, encode_cursor(docs[-1]) if more and docs else None

    async def cancel(self, user: User, name: str) -> Doc:
        doc = await self.get(user, name)
        if doc.get("phase") in TERMINAL:
            raise Conflict(f"execution {name!r} already finished ({doc.get('phase')})")
        try:
            await self.cluster.cancel_execution(name)
        except ClusterUnavailable as exc:
            raise Unavailable(
                "the cancel was not recorded: the cluster is unavailable (retry shortly)"
            ) from exc
        except ApiError as exc:
            if exc.status.code == 404:
                raise Conflict(f"execution {name!r} no longer exists in the cluster") from exc
            raise Conflict(f"the cluster refused the cancel: {api_message(exc)}") from exc
        await self.bus.publish(
            user.id, "execution", execution_event(doc, "cancel-requested"), dedupe_key=f"ex:{name}:cancel"
        )
        return doc

    async def logs(self, user: User, name: str) -> Doc:
        doc = await self.get(user, name)
        note: str | None = None
        if doc.get("jobName"):
            try:
                found = await self.cluster.pod_logs(doc["jobName"])
            except ClusterUnavailable:
                note = "pod logs unavailable (cluster unreachable); showing stored events"
            except ApiError as exc:
                note = f"pod logs unavailable ({api_message(exc)}); showing stored events"
            else:
                if found is not None and found[1]:
                    return {"execution": name, "source": "pod", "pod": found[0], "lines": found[1]}
                note = (
                    "the run's pod no longer exists; showing stored events"
                    if found is None
                    else "the pod's log is empty (not started, or no node yet); showing stored events"
                )
        else:
            note = "the run has no pod yet; showing stored events"
        lines = []
        for event in await self.store.execution_events(user.id, name):
            data = event.get("data") or {}
            text = f"{event.get('createdAt', '')} {data.get('action', event.get('kind'))}"
            text += f" phase={data.get('phase')}"
            if data.get("reason"):
                text += f" reason={data['reason']}"
            if data.get("message"):
                text += f": {data['message']}"
            lines.append(text)
        return {"execution": name, "source": "events", "pod": None, "note": note, "lines": lines}

    # -- the watcher's side -------------------------------------------------------------------

    async def observe(self, event: str, cr: Doc) -> Doc | None:
        """Mirror an Execution CR's status into Firestore and publish what changed."""
        meta = cr["metadata"]
        name = meta["name"]
        doc = await self.store.execution(name)
        if event == "DELETED":
            if doc is not None and not doc.get("clusterDeleted"):
                await self.store.put_execution({"id": name, "clusterDeleted": True}, merge=True)
            return doc
        agent_name = ((cr.get("spec") or {}).get("agentRef") or {}).get("name", "")
        agent = await self.store.agent(agent_name)
        if doc is None:
            if agent is None:
                found = await self.cluster.get_agent(agent_name)
                agent = await self.agents.import_cr(found) if found is not None else None
            if agent is None:
                log.debug("execution %s: agent %s unknown; not mirrored", name, agent_name)
                return None
            doc = first_mirror(cr, agent)
        elif not same_run(doc, agent_name, agent):
            # An Execution that reuses the name of a run we stored (the cluster pruned it), for another
            # agent or another owner: never mirrored into the first owner's records.
            log.warning(
                "execution %s: agentRef %r does not match the stored run; not mirrored", name, agent_name
            )
            return None
        # The Execution's uid tells its gateway call records from those of an earlier one of the name.
        if meta.get("uid") and doc.get("uid") != meta["uid"]:
            doc["uid"], doc["viewHash"] = meta["uid"], None
        if doc.get("parent") != parent_of(cr) or (doc.get("parent") and not doc.get("root")):
            await self._thread_fields(doc, parent_of(cr))
        view = execution_view(cr)
        # The CR's id wins: this write replaces the whole document, so a value read before another
        # writer's merge (the tick route mirroring a kubectl Execution) must not come back.
        cr_correlation = (cr.get("spec") or {}).get("correlationId") or (cr.get("status") or {}).get(
            "correlationId"
        )
        if cr_correlation or not doc.get("correlationId"):
            doc["correlationId"] = cr_correlation
        digest = hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).hexdigest()[:20]
        if doc.get("viewHash") == digest:
            return doc
        doc.update(view)
        doc["viewHash"] = digest
        doc["updatedAt"] = now_iso()
        # The approval side first, then the event, then the stored view (whose hash marks the change
        # done): a client that sees WaitingApproval finds the approval, and a crash anywhere before
        # the store repeats all three, each idempotent (create-once, claim-if-pending, dedupe keys).
        await self._approval_side(doc, view, agent)
        await self.bus.publish(
            doc["userId"],
            "execution",
            execution_event(doc, "status"),
            dedupe_key=f"ex:{meta.get('uid')}:{digest}",
        )
        await self.store.put_execution(doc)
        return doc

    async def _thread_fields(self, doc: Doc, parent: str | None) -> None:
        """A follow-up's `parent` and `root` (the first run of its thread, where its parent's thread
        starts), so that one query finds a thread; set once, as spec.parentRef is immutable."""
        doc["parent"], doc["viewHash"] = parent, None
        if parent is None:
            doc.pop("root", None)
            return
        found = await self.store.execution(parent)
        mine = found is not None and found.get("userId") == doc.get("userId")
        doc["root"] = str((found or {}).get("root") or parent) if mine else parent

    async def _approval_side(self, doc: Doc, view: Doc, agent: Doc | None) -> None:
        """Record and announce the approval a waiting run asks for; close those of a run that ended."""
        approval, phase = view.get("approval"), view["phase"]
        if phase == Phase.WAITING_APPROVAL.value and isinstance(approval, dict) and approval.get("id"):
            await self.approvals.requested(doc, approval, agent)
        elif phase in TERMINAL:
            await self.approvals.run_ended(doc)


def same_run(doc: Doc, agent_name: str, agent: Doc | None) -> bool:
    """Whether an Execution naming `agent_name` is the run stored in `doc`: the same agent, and that
    agent (when it is known) still belongs to the run's owner."""
    if doc.get("agentId") != agent_name:
        return False
    return agent is None or agent.get("userId") == doc.get("userId")


def run_attributes(name: str, agent_id: str, correlation_id: str) -> dict[str, str]:
    """A run's span attributes: ids only."""
    return {
        tracing.ATTR_EXECUTION: name,
        tracing.ATTR_AGENT: agent_id,
        tracing.GEN_AI_AGENT_NAME: agent_id,
        tracing.ATTR_CORRELATION_ID: correlation_id,
    }


def accepted_doc(
    name: str, user_id: str, agent_id: str, trigger: Trigger, correlation_id: str, input_text: str | None
) -> Doc:
    """The Firestore document of a run the API starts, before the operator has seen it."""
    now = now_iso()
    return {
        "id": name,
        "userId": user_id,
        "agentId": agent_id,
        "trigger": trigger.value,
        "correlationId": correlation_id,
        "input": input_text,
        "phase": Phase.PENDING.value,
        "reason": "Accepted",
        "message": "accepted; waiting for the operator",
        "createdAt": now,
        "updatedAt": now,
    }


def first_mirror(cr: Doc, agent: Doc) -> Doc:
    """The Firestore document of an Execution the API did not create (kubectl, the operator)."""
    meta, spec = cr["metadata"], cr.get("spec") or {}
    return {
        "id": meta["name"],
        "userId": agent["userId"],
        "agentId": (spec.get("agentRef") or {}).get("name", ""),
        "trigger": spec.get("trigger", Trigger.MANUAL.value),
        "correlationId": spec.get("correlationId"),
        "input": spec.get("input"),
        "parent": parent_of(cr),
        "createdAt": iso(meta.get("creationTimestamp")) or now_iso(),
    }
