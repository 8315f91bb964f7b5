"""Trying a chat draft ("try it"): the pure half — manifests, and a run's events as message parts.

A trial runs the draft once as a real Execution of a hidden Agent (`agentry.dev/trial: "true"`), so it
goes through the same operator, gateway, budgets and approvals as any run. Its parts are what the chat
shows and stores: `status`, `approval`, `tool_call`, `tool_result`, `result`, `usage` (docs/api.md,
"Chat designer"). The I/O half is `run.py`, the live feed `feed.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable
from typing import Any

from agentry_common import constants as c
from agentry_common.models import TERMINAL_PHASES, Trigger

Doc = dict[str, Any]
TERMINAL = {p.value for p in TERMINAL_PHASES}
APPROVALS_URL = "/approvals"
TEXT_LIMIT = 2000  # per text field of a part: parts are stored with the conversation
TOOL_EVENTS = ("tool_call", "tool_result")


def trial_name() -> str:
    return f"{c.TRIAL_NAME_PREFIX}{secrets.token_hex(5)}"


def is_trial(cr: Doc) -> bool:
    """A trial's hidden Agent or its Execution: never listed, imported or counted as the user's agent."""
    return bool(((cr.get("metadata") or {}).get("labels") or {}).get(c.LABEL_TRIAL))


def trial_labels(owner: str) -> dict[str, str]:
    """The labels that find a user's trials (their Agent and their Execution)."""
    return {c.LABEL_OWNER: owner, c.LABEL_TRIAL: "true"}


def trial_spec(spec: Doc) -> Doc:
    """The draft's spec as the trial runs it: once, now — a schedule would make the hidden Agent tick."""
    return {k: v for k, v in spec.items() if k != "schedule"}


def mark_trial(manifest: Doc, owner: str) -> Doc:
    """An Agent manifest (Cluster.agent_manifest) labelled as a trial."""
    meta = manifest["metadata"]
    meta["labels"] = {**meta.get("labels", {}), **trial_labels(owner)}
    return manifest


def execution_manifest(
    namespace: str, name: str, input_text: str | None, correlation_id: str, owner: str, annotations: Doc
) -> Doc:
    """The trial's Execution: of the hidden Agent of the same name, labelled trial and owned by the user."""
    spec: Doc = {"agentRef": {"name": name}, "trigger": Trigger.API.value, "correlationId": correlation_id}
    if input_text:
        spec["input"] = input_text
    labels = {**trial_labels(owner), c.LABEL_AGENT: name, c.LABEL_TRIGGER: Trigger.API.value}
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.EXECUTION_KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {**annotations, c.ANNOTATION_CORRELATION_ID: correlation_id},
        },
        "spec": spec,
    }


def _cut(value: Any) -> Any:
    return value[:TEXT_LIMIT] if isinstance(value, str) else value


def status_part(data: Doc) -> Doc:
    return {
        "kind": "status",
        "phase": data.get("phase") or "Pending",
        "reason": data.get("reason"),
        "message": _cut(data.get("message")),
    }


def approval_part(approval: Doc, state: str) -> Doc:
    return {
        "kind": "approval",
        "id": approval.get("id"),
        "state": state,
        "tool": approval.get("tool"),
        "summary": _cut(approval.get("summary")),
        "risk": approval.get("risk"),
        "url": APPROVALS_URL,
    }


def ended_parts(data: Doc) -> list[Doc]:
    """The result and the tokens and cost of a run that ended (what of them it reported)."""
    parts: list[Doc] = []
    result = data.get("result")
    if isinstance(result, dict):
        parts.append(
            {
                "kind": "result",
                "summary": _cut(result.get("summary", "")),
                "stopReason": result.get("stopReason"),
            }
        )
    usage = data.get("usage")
    if isinstance(usage, dict):
        keys = ("inputTokens", "outputTokens", "costUSD", "model", "turns")
        parts.append({"kind": "usage", **{k: usage.get(k) for k in keys}})
    return parts


def same_status(a: Doc | None, b: Doc) -> bool:
    """Whether `b` says nothing new after `a`: the same phase, and the same reason or none."""
    return a is not None and a.get("phase") == b["phase"] and b["reason"] in (None, a.get("reason"))


def event_parts(event: Doc, last_status: Doc | None) -> list[Doc]:
    """The parts one feed event of the trial's Execution adds (a repeat of the status adds none)."""
    data = event.get("data") or {}
    if event.get("kind") == "approval":
        state = data.get("state") or "pending"
        return (
            [approval_part(data, state)] if data.get("action") in {"requested", "decided", "closed"} else []
        )
    if event.get("kind") != "execution":
        return []
    status = status_part(data)
    parts: list[Doc] = [] if same_status(last_status, status) else [status]
    if status["phase"] in TERMINAL:
        parts += ended_parts(data)
    return parts


def tool_parts(lines: Iterable[str], seen: set[str]) -> list[Doc]:
    """Tool calls and results from the run's step events (its pod log, one JSON object a line) not
    in `seen` (keys added)."""
    parts: list[Doc] = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("type") not in TOOL_EVENTS:
            continue
        key = f"{event['type']}:{event.get('toolUseId')}"
        if key in seen:
            continue
        seen.add(key)
        part: Doc = {"kind": event["type"], "id": event.get("toolUseId"), "tool": event.get("tool")}
        if event["type"] == "tool_call":
            part.update(arguments=_cut(event.get("arguments")), risk=event.get("risk"))
        else:
            part.update(isError=bool(event.get("isError")), summary=_cut(event.get("summary")))
        parts.append(part)
    return parts


def phase_of(cr: Doc) -> str:
    return str((cr.get("status") or {}).get("phase") or "Pending")


def created_at(cr: Doc) -> dt.datetime | None:
    stamp = (cr.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def active(executions: Iterable[Doc]) -> int:
    """How many of a user's trial Executions are still running (their concurrency quota)."""
    return sum(phase_of(e) not in TERMINAL for e in executions)


def to_sweep(
    agents: Iterable[Doc], executions: Iterable[Doc], now: dt.datetime, ttl: dt.timedelta
) -> list[str]:
    """The hidden Agents to delete: their run ended, they never got a run (a start that failed
    half-way) after a grace minute, or they are older than `ttl` whatever their run is doing."""
    phases = {e["metadata"]["name"]: phase_of(e) for e in executions}
    names = []
    for agent in agents:
        name, born = agent["metadata"]["name"], created_at(agent)
        age = now - born if born is not None else ttl
        phase = phases.get(name)
        if phase in TERMINAL or age >= ttl or (phase is None and age >= dt.timedelta(minutes=1)):
            names.append(name)
    return names
