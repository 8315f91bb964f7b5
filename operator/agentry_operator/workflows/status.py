"""A WorkflowRun's status from a plan and the attempts: per step, totals, progress, condition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal

from agentry_common.workflows import (
    RunCondition,
    RunPhase,
    RunReason,
    RunTotals,
    StepStatus,
    WorkflowRunStatus,
)

from .planner import Plan
from .step import Attempt, rfc3339

SUCCEEDED = "Succeeded"  # the run's one condition type
ENDED = frozenset(p.value for p in RunPhase if p.terminal)  # status.phase of a run that has ended


def _money(value: Decimal) -> str:
    return f"{value.normalize():f}" if value else "0"


def step_status(name: str, plan: Plan, attempts: Sequence[Attempt], now: dt.datetime) -> StepStatus:
    view = plan.steps[name]
    entry = StepStatus(name=name, phase=view.phase, message=view.message[:1024])
    started = [n for s, n in plan.starts if s == name]
    count = max([a.number for a in attempts] + started + [0])
    if count:
        entry.attempts = count
        entry.start_time = rfc3339(attempts[0].created if attempts else now)
    if attempts:
        entry.execution = attempts[-1].name
        entry.tokens = sum(a.tokens for a in attempts)
        entry.cost_usd = _money(sum((a.cost for a in attempts), Decimal(0)))
    if view.phase.terminal and attempts and attempts[-1].completed is not None:
        entry.completion_time = rfc3339(attempts[-1].completed)
    if view.next_attempt is not None:
        entry.next_attempt_time = rfc3339(view.next_attempt)
    return entry


def _entry(
    name: str, plan: Plan, attempts: Sequence[Attempt], recorded: StepStatus | None, now: dt.datetime
) -> StepStatus:
    """A step's entry; an ended step whose Executions were pruned since keeps its recorded one."""
    if recorded is not None and (recorded.attempts or 0) > max((a.number for a in attempts), default=0):
        return recorded
    return step_status(name, plan, attempts, now)


def _condition(previous: Sequence[RunCondition], plan: Plan, now: str) -> RunCondition:
    state = {RunPhase.SUCCEEDED: "True", RunPhase.FAILED: "False"}.get(plan.phase, "Unknown")
    old = next((c for c in previous if c.type == SUCCEEDED), None)
    return RunCondition(
        type=SUCCEEDED,
        status=state,
        reason=plan.reason.value,
        message=plan.message[:32768],
        last_transition_time=now if old is None or old.status != state else old.last_transition_time,
    )


def build_status(
    plan: Plan,
    attempts: Mapping[str, Sequence[Attempt]],
    previous: WorkflowRunStatus,
    workflow_generation: int,
    now: dt.datetime,
) -> WorkflowRunStatus:
    """The whole status of a run (a merge patch replaces each list as a whole)."""
    recorded = {e.name: e for e in previous.steps}
    steps = [_entry(name, plan, attempts.get(name, ()), recorded.get(name), now) for name in plan.steps]
    every = [a for items in attempts.values() for a in items]
    ended = sum(1 for v in plan.steps.values() if v.phase.terminal)
    stamp = rfc3339(now)
    status = WorkflowRunStatus(
        phase=plan.phase,
        reason=plan.reason.value,
        message=plan.message,
        progress=f"{ended}/{len(plan.steps)}",
        workflow_generation=workflow_generation,
        steps=steps,
        totals=RunTotals(
            tokens=sum(e.tokens or 0 for e in steps),
            cost_usd=_money(sum((Decimal(e.cost_usd or 0) for e in steps), Decimal(0))),
        ),
        conditions=[_condition(previous.conditions, plan, stamp)],
    )
    first = min((a.created for a in every), default=now if plan.starts else None)
    if first is not None:
        status.start_time = previous.start_time or rfc3339(first)
    if plan.phase.terminal:
        status.completion_time = previous.completion_time or stamp
    return status


def failed_status(
    reason: RunReason, message: str, previous: WorkflowRunStatus, now: dt.datetime
) -> WorkflowRunStatus:
    """A run that cannot run at all (its Workflow is gone or invalid): Failed with why."""
    plan = Plan(steps={}, phase=RunPhase.FAILED, reason=reason, message=message)
    return WorkflowRunStatus(
        phase=RunPhase.FAILED,
        reason=reason.value,
        message=message,
        completion_time=previous.completion_time or rfc3339(now),
        conditions=[_condition(previous.conditions, plan, rfc3339(now))],
    )
