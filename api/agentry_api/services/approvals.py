"""Approvals (API side of the two-phase flow for risky actions).

The runtime stops before a RED action; the operator sets the Execution to WaitingApproval with
`status.approval`. The watcher calls `requested` (an `approvals` document and an event) before it
stores or streams the WaitingApproval view, and `run_ended` before it stores a terminal one. A decision
(a person, or the timeout sweep) first claims the pending document in a transaction, then appends
`{id, approved, decidedBy, reason}` to the Execution's `spec.approvals`; if the cluster cannot be
reached the claim is released and the caller gets 503, so a decision is never half-recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from lightkube import ApiError

from agentry_common.models import ApprovalSpec, OnTimeout
from agentry_common.notifications import EventKind

from ..auth import User
from ..cluster import Cluster, ClusterUnavailable, api_message
from ..storage import Store, now_iso
from .errors import Conflict, NotFound, Unavailable
from .events import EventBus
from .views import approval_out, iso

if TYPE_CHECKING:
    from .notifications.outbox import Outbox

log = logging.getLogger("agentry.api.approvals")
Doc = dict[str, Any]
DEFAULT_TIMEOUT = 3600
TIMEOUT_DECIDER = "agentry-api (timeout)"
RUN_ENDED_DECIDER = "agentry-api"
NOTICE_AT = 0.8  # "about to expire" is sent when 80% of the time to decide has passed


class ApprovalService:
    def __init__(self, store: Store, cluster: Cluster, bus: EventBus) -> None:
        self.store, self.cluster, self.bus = store, cluster, bus
        self.outbox: Outbox | None = None  # notifications: about to expire, escalated

    async def requested(self, execution: Doc, approval: Doc, agent: Doc | None) -> None:
        """Store the approval a waiting run asks for, then announce it. Called before the run's
        WaitingApproval view is stored or streamed, and again after a crash: the create is once only
        and the announcement's key makes a repeat a no-op."""
        doc = approval_doc(execution, approval, agent)
        existing = await self.store.approval(doc["id"])
        if existing is None and not await self.store.create_approval(doc):
            existing = await self.store.approval(doc["id"])  # another replica created it just now
        if existing is not None:
            if existing.get("state") != "pending":
                return
            # The operator owns the deadline: follow a changed expiresAt while undecided.
            if existing.get("expiresAt") != doc["expiresAt"]:
                await self.store.update_approval(doc["id"], {"expiresAt": doc["expiresAt"]})
                existing["expiresAt"] = doc["expiresAt"]
            doc = existing
        await self.bus.publish(
            doc["userId"],
            "approval",
            {"action": "requested", "execution": doc["execution"], **approval_out(doc).model_dump()},
            dedupe_key=f"approval:{doc['id']}:requested",
        )

    async def list(self, user: User, state: str | None) -> list[Doc]:
        return await self.store.list_approvals(user.id, state)

    async def get(self, user: User, approval_id: str) -> Doc:
        doc = await self.store.owned_approval(user.id, approval_id)
        if doc is None:
            raise NotFound(f"approval {approval_id!r} not found")
        return doc

    async def decide(self, user: User, approval_id: str, approved: bool, reason: str | None) -> Doc:
        doc = await self.get(user, approval_id)
        if doc.get("state") != "pending":
            raise Conflict(
                f"approval {approval_id!r} was already decided ({doc.get('state')} by {doc.get('decidedBy')} "
                f"at {doc.get('decidedAt')})"
            )
        return await self._decide(doc, approved, user.id, reason, "approved" if approved else "denied")

    async def _decide(self, doc: Doc, approved: bool, by: str, reason: str | None, state: str) -> Doc:
        fields = {
            "state": state,
            "decidedBy": by,
            "decidedAt": now_iso(),
            "reason": reason,
            "recorded": False,
        }
        claimed = await self.store.decide_approval(doc["id"], fields)
        if claimed is None:
            raise Conflict(f"approval {doc['id']!r} was decided by someone else just now")
        decision: Doc = {"id": doc["id"], "approved": approved, "decidedBy": by[:253]}
        if reason:
            decision["reason"] = reason[:1024]
        try:
            present = await self.cluster.append_approval(doc["execution"], decision)
        except (ClusterUnavailable, ApiError) as exc:
            await self.store.update_approval(
                doc["id"], {"state": "pending", "decidedBy": None, "decidedAt": None, "reason": None}
            )
            if isinstance(exc, ClusterUnavailable):
                raise Unavailable(
                    "the decision was not recorded: the cluster is unavailable (retry shortly)"
                ) from exc
            raise Conflict(f"the cluster refused the decision: {api_message(exc)}") from exc
        note = None if present else "the execution no longer exists in the cluster"
        await self.store.update_approval(doc["id"], {"recorded": present, "note": note})
        claimed.update(recorded=present, note=note)
        await self.bus.publish(
            doc["userId"],
            "approval",
            {"action": "decided", "execution": doc["execution"], **approval_out(claimed).model_dump()},
            dedupe_key=f"approval:{doc['id']}:decided",
        )
        log.info("approval %s %s by %s correlation_id=%s", doc["id"], state, by, doc.get("correlationId"))
        return claimed

    async def run_ended(self, execution: Doc) -> None:
        """The run ended (cancelled, failed, timed out by the operator) while an approval was pending:
        close it so the inbox does not offer a decision that can no longer matter. Called before the
        run's terminal view is stored, and again after a crash: a close made then is announced again
        (the key makes that a no-op if it was)."""
        reason = f"the run ended without a decision ({execution.get('reason') or execution.get('phase')})"
        fields = {"state": "expired", "decidedBy": RUN_ENDED_DECIDER, "decidedAt": now_iso()}
        fields["reason"] = reason
        for doc in await self.store.approvals_of(execution["userId"], execution["id"]):
            closed: Doc | None = None
            if doc.get("state") == "pending":
                closed = await self.store.decide_approval(doc["id"], fields)
            elif doc.get("state") == "expired" and doc.get("decidedBy") == RUN_ENDED_DECIDER:
                closed = doc
            if closed is not None:
                await self.bus.publish(
                    doc["userId"],
                    "approval",
                    {"action": "closed", "execution": doc["execution"], **approval_out(closed).model_dump()},
                    dedupe_key=f"approval:{doc['id']}:decided",
                )

    async def expire_due(self) -> int:
        """The sweep: tell of approvals about to expire, escalate those past their timeout whose Agent
        says Escalate, and deny every pending approval past its expiry (reason "timeout"). Returns how
        many were denied. Each notice is recorded before its mark is cleared, under a fixed id: a crash
        in between repeats the record, which is then a no-op."""
        if self.outbox is not None:
            await self._notices(self.outbox)
        count = 0
        for doc in await self.store.expired_approvals(now_iso()):
            try:
                await self._decide(doc, False, TIMEOUT_DECIDER, "timeout", "expired")
                count += 1
            except (Conflict, Unavailable) as exc:
                log.warning("approval %s: timeout not recorded yet: %s", doc["id"], exc)
        return count

    async def _notices(self, outbox: Outbox) -> None:
        now = now_iso()
        for doc in await self.store.approvals_due("noticeAt", now):
            await outbox.record(
                f"approval:{doc['id']}:expiring",
                EventKind.APPROVAL_EXPIRING,
                doc["userId"],
                f"Approval about to expire: {doc.get('tool') or 'an action'} in run {doc['execution']}",
                **notice_fields(doc, outbox),
            )
            await self.store.update_approval(doc["id"], {"noticeAt": None})
        for doc in await self.store.approvals_due("escalateAt", now):
            await outbox.record(
                f"approval:{doc['id']}:escalated",
                EventKind.APPROVAL_ESCALATED,
                doc["userId"],
                f"Approval escalated: nobody decided on {doc.get('tool') or 'an action'} in run "
                f"{doc['execution']}",
                target=doc.get("escalateTo"),
                **notice_fields(doc, outbox),
            )
            await self.store.update_approval(doc["id"], {"escalateAt": None})


def notice_fields(doc: Doc, outbox: Outbox) -> Doc:
    return {
        "agent": doc.get("agentId"),
        "execution": doc["execution"],
        "approval": doc["id"],
        "message": doc.get("summary"),
        "link": outbox.link(f"/executions/{doc['execution']}"),
        "data": {"risk": doc.get("risk"), "expiresAt": doc.get("expiresAt")},
    }


def at(start: str, seconds: float) -> str:
    when = dt.datetime.fromisoformat(start.replace("Z", "+00:00")) + dt.timedelta(seconds=seconds)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timing(requested_at: str, expires_at: str, agent: Doc | None) -> Doc:
    """When to send "about to expire" and, for an Agent whose approvals escalate, when to escalate and
    to which subscription: the timeout counts from the request; the expiry (the operator's) includes
    the escalation's time."""
    try:
        spec = ApprovalSpec.model_validate(((agent or {}).get("spec") or {}).get("approval") or {})
    except ValueError:
        spec = ApprovalSpec()
    start = dt.datetime.fromisoformat(requested_at.replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    first = (end - start).total_seconds()
    fields: Doc = {"noticeAt": None, "escalateAt": None, "escalateTo": None}
    if spec.on_timeout == OnTimeout.ESCALATE and spec.escalation is not None:
        first = min(first, float(spec.timeout_seconds))
        fields.update(escalateAt=at(requested_at, first), escalateTo=spec.escalation.subscription)
    fields["noticeAt"] = at(requested_at, first * NOTICE_AT)
    return fields


def approval_doc(execution: Doc, approval: Doc, agent: Doc | None) -> Doc:
    """The `approvals` document for the approval in an Execution's status (expiry: the operator's,
    else the Agent's timeout from the request)."""
    requested_at = iso(approval.get("requestedAt")) or now_iso()
    expires_at = iso(approval.get("expiresAt"))
    if expires_at is None:
        timeout = int(
            ((agent or {}).get("spec") or {}).get("approval", {}).get("timeoutSeconds", DEFAULT_TIMEOUT)
        )
        start = dt.datetime.fromisoformat(requested_at.replace("Z", "+00:00"))
        expires_at = iso((start + dt.timedelta(seconds=timeout)).isoformat())
    return {
        "id": str(approval["id"]),
        "userId": execution["userId"],
        "execution": execution["id"],
        "agentId": execution.get("agentId", ""),
        "tool": approval.get("tool"),
        "summary": approval.get("summary"),
        "input": approval.get("input"),
        "inputTruncated": approval.get("inputTruncated"),
        "risk": approval.get("risk"),
        "requestedAt": requested_at,
        "expiresAt": expires_at,
        "state": "pending",
        "correlationId": execution.get("correlationId"),
        **timing(requested_at, expires_at or requested_at, agent),
    }
