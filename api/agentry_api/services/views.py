"""Firestore documents → public views (the only shapes routes return)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agentry_common.conditions import ConditionType
from agentry_common.models import Trigger
from agentry_common.pricing import usd_string

from ..schemas import AgentOut, AgentStatusOut, ApprovalOut, ExecutionOut, SyncState
from .usage import run_saving

Doc = dict[str, Any]

EXECUTION_FIELDS = (
    "phase",
    "reason",
    "message",
    "startTime",
    "completionTime",
    "duration",
    "attempts",
    "result",
    "usage",
    "approval",
    "jobName",
)


def iso(value: str | None) -> str | None:
    """An RFC 3339 time from Kubernetes in the store's sortable form."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def agent_out(doc: Doc) -> AgentOut:
    sync = doc.get("sync") or {"state": "Synced"}
    return AgentOut(
        id=doc["id"],
        name=doc.get("name") or doc["id"],
        description=(doc.get("spec") or {}).get("description", ""),
        source=doc.get("source", "api"),
        editable=doc.get("source", "api") == "api",
        spec=doc.get("spec") or {},
        status=AgentStatusOut(**(doc.get("status") or {})),
        sync=SyncState(**sync),
        createdAt=doc.get("createdAt", ""),
        updatedAt=doc.get("updatedAt", ""),
    )


def agent_status_view(cr: Doc) -> Doc:
    status = cr.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.READY), None)
    paused = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == ConditionType.SCHEDULE_PAUSED and c.get("status") == "True"
        ),
        None,
    )
    view: Doc = {
        "ready": ready.get("status") if ready else None,
        "reason": ready.get("reason") if ready else None,
        "message": ready.get("message") if ready else None,
        "nextRunTime": status.get("nextRunTime"),
        "upcomingRuns": status.get("upcomingRuns"),
        "model": status.get("model"),
        "lastExecution": status.get("lastExecution"),
        "totals": status.get("totals"),
        # The schedule's catch-up and pause state: skipped runs, the last backfill, why it is paused.
        "scheduleState": status.get("scheduleState"),
        "paused": {"reason": paused.get("reason"), "message": paused.get("message")} if paused else None,
    }
    return view


def execution_view(cr: Doc) -> Doc:
    status = cr.get("status") or {}
    view: Doc = {k: status.get(k) for k in EXECUTION_FIELDS}
    view["phase"] = status.get("phase") or "Pending"
    # Only when reported: the view of a run without one (and so its stored hash) stays as it was.
    if status.get("checkpoint"):
        view["checkpoint"] = status["checkpoint"]
    return view


def parent_of(cr: Doc) -> str | None:
    """The run a follow-up continues (spec.parentRef.name; immutable), else None."""
    name = ((cr.get("spec") or {}).get("parentRef") or {}).get("name")
    return name if isinstance(name, str) and name else None


def usage_out(usage: Doc | None) -> Doc | None:
    """A run's usage as stored, with `savingUSD` (what prompt caching saved) when it reported its
    uncached cost."""
    if not isinstance(usage, dict):
        return None
    saving = run_saving(usage)
    return usage if saving is None else {**usage, "savingUSD": usd_string(saving)}


def execution_out(doc: Doc) -> ExecutionOut:
    return ExecutionOut(
        id=doc["id"],
        agentId=doc.get("agentId", ""),
        trigger=doc.get("trigger", Trigger.MANUAL.value),
        correlationId=doc.get("correlationId"),
        input=doc.get("input"),
        phase=doc.get("phase") or "Pending",
        reason=doc.get("reason"),
        message=doc.get("message"),
        startTime=doc.get("startTime"),
        completionTime=doc.get("completionTime"),
        duration=doc.get("duration"),
        attempts=doc.get("attempts"),
        result=doc.get("result"),
        usage=usage_out(doc.get("usage")),
        approval=doc.get("approval"),
        trial=bool(doc.get("trial")),
        parent=doc.get("parent"),
        checkpoint=doc.get("checkpoint"),
        createdAt=doc.get("createdAt", ""),
        updatedAt=doc.get("updatedAt", ""),
    )


def approval_out(doc: Doc) -> ApprovalOut:
    return ApprovalOut(
        **{k: doc.get(k) for k in ApprovalOut.model_fields if k in doc},
    )


def execution_event(doc: Doc, action: str) -> Doc:
    out = execution_out(doc).model_dump(mode="json", exclude={"input"})
    return {"action": action, "execution": doc["id"], **out}
