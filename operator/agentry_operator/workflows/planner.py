"""The next-step planner: from a Workflow, its run and the attempts so far, what each step is, which
attempts to start now, which to cancel, and when to look again. Pure: time comes in as `now`.

Rules (docs/workflows.md): a step is considered once every dependency has ended; its `when` decides
whether it runs or is Skipped. A failed attempt is retried after an exponential backoff while
retries.limit allows. A step failed for good stops, under FailFast, every step not yet started but
Always ones. Ready steps start by priority (then spec order) while fewer than `parallelism` run;
steps waiting for an approval take no slot. Past a step's deadline its attempt is cancelled; past
the run's deadline every running attempt is, and the run fails.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentry_common.models import Phase
from agentry_common.workflows import FailurePolicy, RunPhase, RunReason, StepPhase, StepStatus, StepWhen

from . import graph
from .step import Attempt

Doc = Mapping[str, Any]


def condition_holds(when: StepWhen, deps: Sequence[StepPhase]) -> bool:
    """A step's `when` over its dependencies' phases (all ended)."""
    if when == StepWhen.SUCCEEDED:
        return all(p == StepPhase.SUCCEEDED for p in deps)
    if when == StepWhen.FAILED:
        return any(p == StepPhase.FAILED for p in deps)
    if when == StepWhen.COMPLETED:
        return all(p in (StepPhase.SUCCEEDED, StepPhase.FAILED) for p in deps)
    return True  # Always


@dataclass
class StepView:
    phase: StepPhase
    message: str = ""
    next_attempt: dt.datetime | None = None


@dataclass
class Plan:
    steps: dict[str, StepView]
    starts: list[tuple[str, int]] = field(default_factory=list)  # (step, attempt number)
    cancels: list[str] = field(default_factory=list)  # Execution names
    phase: RunPhase = RunPhase.PENDING
    reason: RunReason = RunReason.STARTED
    message: str = ""
    wake: dt.datetime | None = None

    def wake_at(self, when: dt.datetime) -> None:
        self.wake = when if self.wake is None else min(self.wake, when)


def backoff_seconds(retries: Doc, failed_attempts: int) -> int:
    """Wait after the n-th failed attempt: backoffSeconds * factor^(n-1), at most maxBackoffSeconds."""
    base, factor = int(retries.get("backoffSeconds", 10)), int(retries.get("factor", 2))
    return int(min(base * factor ** max(failed_attempts - 1, 0), int(retries.get("maxBackoffSeconds", 3600))))


def _failed_for_good(step: Doc, attempts: Sequence[Attempt]) -> bool:
    last = attempts[-1] if attempts else None
    if last is None or not last.ended or last.phase == Phase.SUCCEEDED:
        return False
    return len(attempts) > int((step.get("retries") or {}).get("limit", 0))


def ended_steps(previous: Sequence[StepStatus]) -> dict[str, StepView]:
    """The steps a run's status records as ended: final, whatever their Executions say now (an
    Agent's historyLimits may have pruned them)."""
    return {e.name: StepView(e.phase, e.message or "") for e in previous if e.phase.terminal}


def plan(
    spec: Doc,
    run_created: dt.datetime,
    attempts: Mapping[str, Sequence[Attempt]],
    now: dt.datetime,
    ended: Mapping[str, StepView] | None = None,
    cancelled: bool = False,
) -> Plan:
    """What to do now for one run; `spec` must have passed graph.spec_errors; `ended`: the steps
    recorded as ended (ended_steps); `cancelled`: the run's spec.cancel (stops it like its deadline)."""
    steps = {str(s["name"]): s for s in graph.steps_of(spec)}
    ended = ended or {}
    result = Plan(steps={})
    deadline = spec.get("deadlineSeconds")
    expired = cancelled or (deadline is not None and now >= run_created + dt.timedelta(seconds=int(deadline)))
    stopping = expired or (
        spec.get("failurePolicy", FailurePolicy.FAIL_FAST) == FailurePolicy.FAIL_FAST
        and any(
            _failed_for_good(s, attempts.get(n, ())) or (n in ended and ended[n].phase == StepPhase.FAILED)
            for n, s in steps.items()
        )
    )
    ready: list[str] = []
    for name in graph.order(list(steps.values())):
        view = ended.get(name) or _step(steps[name], attempts.get(name, ()), result, stopping, expired, now)
        if view is None:
            ready.append(name)
            view = StepView(StepPhase.PENDING, "ready; waiting for a parallelism slot")
        result.steps[name] = view
        if deadline is not None and not view.phase.terminal:
            result.wake_at(run_created + dt.timedelta(seconds=int(deadline)))
    _start(spec, steps, ready, attempts, result)
    _finish(result, expired)
    if cancelled:
        result.reason, result.message = (
            RunReason.CANCELLED,
            "cancelled (spec.cancel); running steps were cancelled",
        )
    return result


def _step(
    step: Doc, attempts: Sequence[Attempt], result: Plan, stopping: bool, expired: bool, now: dt.datetime
) -> StepView | None:
    """A step's view, or None when an attempt of it may start now."""
    last = attempts[-1] if attempts else None
    if last is not None and not last.ended:
        return _active(step, last, result, expired, now)
    if last is not None and last.phase == Phase.SUCCEEDED:
        return StepView(StepPhase.SUCCEEDED, f"attempt {last.number} ({last.name}) succeeded")
    if last is not None:
        return _failed(step, attempts, result, stopping, now)
    deps = [result.steps[d].phase for d in graph.deps_of(step)]
    if not all(p.terminal for p in deps):
        return StepView(StepPhase.PENDING, "waiting for its dependencies")
    when = StepWhen(step.get("when") or StepWhen.SUCCEEDED)
    if expired:
        return StepView(StepPhase.SKIPPED, "the run's deadline passed")
    if stopping and when != StepWhen.ALWAYS:
        return StepView(StepPhase.SKIPPED, "a step failed and the failure policy is FailFast")
    if not condition_holds(when, deps):
        return StepView(StepPhase.SKIPPED, f"when: {when} does not hold for its dependencies")
    return None


def _active(step: Doc, last: Attempt, result: Plan, expired: bool, now: dt.datetime) -> StepView:
    limit = step.get("deadlineSeconds")
    late = limit is not None and now >= last.created + dt.timedelta(seconds=int(limit))
    if (expired or late) and not last.cancelling:
        result.cancels.append(last.name)
    elif limit is not None and not late:
        result.wake_at(last.created + dt.timedelta(seconds=int(limit)))
    if last.phase == Phase.WAITING_APPROVAL:
        return StepView(StepPhase.WAITING_APPROVAL, f"{last.name} waits for an approval")
    return StepView(StepPhase.RUNNING, f"attempt {last.number}: {last.name}")


def _failed(
    step: Doc, attempts: Sequence[Attempt], result: Plan, stopping: bool, now: dt.datetime
) -> StepView | None:
    last = attempts[-1]
    why = f"attempt {last.number} ({last.name}) ended {last.phase}"
    if _failed_for_good(step, attempts) or stopping:
        return StepView(StepPhase.FAILED, why)
    retry_at = (last.completed or last.created) + dt.timedelta(
        seconds=backoff_seconds(step.get("retries") or {}, len(attempts))
    )
    if now >= retry_at:
        return None
    result.wake_at(retry_at)
    return StepView(StepPhase.BACKOFF, f"{why}; retrying", retry_at)


def _start(
    spec: Doc,
    steps: Mapping[str, Doc],
    ready: list[str],
    attempts: Mapping[str, Sequence[Attempt]],
    result: Plan,
) -> None:
    running = sum(1 for v in result.steps.values() if v.phase == StepPhase.RUNNING)
    limit = spec.get("parallelism")
    slots = len(ready) if limit is None else max(int(limit) - running, 0)
    index = {name: i for i, name in enumerate(steps)}
    ready.sort(key=lambda n: (-int(steps[n].get("priority") or 0), index[n]))
    for name in ready[:slots]:
        number = len(attempts.get(name, ())) + 1
        result.starts.append((name, number))
        result.steps[name] = StepView(StepPhase.RUNNING, f"attempt {number} starting")


def _finish(result: Plan, expired: bool) -> None:
    views = result.steps.values()
    failed = [n for n, v in result.steps.items() if v.phase == StepPhase.FAILED]
    if expired:
        result.phase, result.reason = RunPhase.FAILED, RunReason.DEADLINE_EXCEEDED
        result.message = "the run's deadlineSeconds passed; running steps were cancelled"
        for view in views:
            if view.phase == StepPhase.PENDING:
                view.phase, view.message = StepPhase.SKIPPED, "the run's deadline passed"
            elif not view.phase.terminal:
                view.phase, view.message = StepPhase.FAILED, "cancelled: the run's deadline passed"
    elif all(v.phase.terminal for v in views):
        result.phase = RunPhase.FAILED if failed else RunPhase.SUCCEEDED
        result.reason = RunReason.STEP_FAILED if failed else RunReason.ALL_SUCCEEDED
        result.message = f"failed: {', '.join(failed)}" if failed else "every step ended"
    elif any(v.phase != StepPhase.PENDING for v in views):
        result.phase, result.message = RunPhase.RUNNING, ""
    if result.phase.terminal:
        result.wake = None
