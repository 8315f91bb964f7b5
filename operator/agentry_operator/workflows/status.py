"""A WorkflowRun's status from a plan and the attempts: per step, totals, progress, condition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from agentry_common.workflows import RunPhase, RunReason

from .planner import Plan
from .step import Attempt, rfc3339

SUCCEEDED = "Succeeded"  # the run's one condition type


def _money(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def step_status(name: str, plan: Plan, attempts: Sequence[Attempt], now: dt.datetime) -> dict[str, Any]:
    view = plan.steps[name]
    entry: dict[str, Any] = {"name": name, "phase": view.phase.value, "message": view.message[:1024]}
    started = [n for s, n in plan.starts if s == name]
    count = max([a.number for a in attempts] + started + [0])
    if count:
        entry["attempts"] = count
        entry["startTime"] = rfc3339(attempts[0].created if attempts else now)
    if attempts:
        entry["execution"] = attempts[-1].name
        entry["tokens"] = sum(a.tokens for a in attempts)
        entry["costUSD"] = _money(sum((a.cost for a in attempts), Decimal(0)))
    if view.phase.terminal and attempts and attempts[-1].completed is not None:
        entry["completionTime"] = rfc3339(attempts[-1].completed)
    if view.next_attempt is not None:
        entry["nextAttemptTime"] = rfc3339(view.next_attempt)
    return entry


def _entry(
    name: str, plan: Plan, attempts: Sequence[Attempt], recorded: Mapping[str, Any] | None, now: dt.datetime
) -> dict[str, Any]:
    """A step's entry; an ended step whose Executions were pruned since keeps its recorded one."""
    if recorded is not None and int(recorded.get("attempts") or 0) > max(
        (a.number for a in attempts), default=0
    ):
        return dict(recorded)
    return step_status(name, plan, attempts, now)


def _condition(previous: Sequence[Mapping[str, Any]], plan: Plan, now: str) -> dict[str, Any]:
    state = {RunPhase.SUCCEEDED: "True", RunPhase.FAILED: "False"}.get(plan.phase, "Unknown")
    old = next((c for c in previous if c.get("type") == SUCCEEDED), None)
    moved = old is None or old.get("status") != state
    return {
        "type": SUCCEEDED,
        "status": state,
        "reason": plan.reason.value,
        "message": plan.message[:32768],
        "lastTransitionTime": now if moved or old is None else old["lastTransitionTime"],
    }


def build_status(
    plan: Plan,
    attempts: Mapping[str, Sequence[Attempt]],
    previous: Mapping[str, Any],
    workflow_generation: int,
    now: dt.datetime,
) -> dict[str, Any]:
    """The whole status of a run (a merge patch replaces each list as a whole)."""
    recorded = {str(e["name"]): e for e in previous.get("steps") or []}
    steps = [_entry(name, plan, attempts.get(name, ()), recorded.get(name), now) for name in plan.steps]
    every = [a for items in attempts.values() for a in items]
    ended = sum(1 for v in plan.steps.values() if v.phase.terminal)
    stamp = rfc3339(now)
    status: dict[str, Any] = {
        "phase": plan.phase.value,
        "reason": plan.reason.value,
        "message": plan.message,
        "progress": f"{ended}/{len(plan.steps)}",
        "workflowGeneration": workflow_generation,
        "steps": steps,
        "totals": {
            "tokens": sum(int(e.get("tokens") or 0) for e in steps),
            "costUSD": _money(sum((Decimal(e.get("costUSD") or 0) for e in steps), Decimal(0))),
        },
        "conditions": [_condition(previous.get("conditions") or [], plan, stamp)],
    }
    first = min((a.created for a in every), default=now if plan.starts else None)
    if first is not None:
        status["startTime"] = previous.get("startTime") or rfc3339(first)
    if plan.phase.terminal:
        status["completionTime"] = previous.get("completionTime") or stamp
    return status


def failed_status(
    reason: RunReason, message: str, previous: Mapping[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """A run that cannot run at all (its Workflow is gone or invalid): Failed with why."""
    plan = Plan(steps={}, phase=RunPhase.FAILED, reason=reason, message=message)
    return {
        "phase": RunPhase.FAILED.value,
        "reason": reason.value,
        "message": message,
        "completionTime": previous.get("completionTime") or rfc3339(now),
        "conditions": [_condition(previous.get("conditions") or [], plan, rfc3339(now))],
    }
