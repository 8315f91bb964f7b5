"""A Workflow's spec.schedule, pure: which fire times start now, which are skipped and why, the new
bookkeeping (status.scheduleState) and when to look again. Time comes in as `now`.

The fire-time rules (IANA zone, DST, jitter, catch-up plan, failure streak, fresh state after an
edit) are the Agent schedule's (firetimes.py, schedule.py); only what differs lives here: the
operator itself fires a Workflow's times (no CronJob), so a time is due as soon as it (plus jitter)
has passed, and the concurrency policy is decided here, among the runs of the Workflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_common.models import ConcurrencyPolicy, Trigger

from ..builders.agent_status import history_order
from ..builders.kinds import Schedule, ScheduleState, SkippedRuns, WorkflowRunSpec
from ..firetimes import catchup_plan, next_fire_times
from ..schedule import (
    backfill_error,
    backfill_key,
    backfill_times,
    failure_streak,
    fresh_state,
    jitter_of,
    parse_time,
    paused_state,
    rfc3339,
    signature,
)

# Without catchupWindowSeconds, a fire time is still started this late (an operator restart, a slow
# tick); one missed by more is skipped and recorded, like a CronJob's startingDeadlineSeconds.
START_GRACE_SECONDS = 300
DEFAULT_MAX_CATCHUP = 3  # as the Agent schedule's maxCatchupRuns default
LOOK_AGAIN = dt.timedelta(minutes=5)  # the timer looks at least this often, whatever the cron

Doc = Mapping[str, Any]


@dataclass
class Tick:
    state: ScheduleState
    start: list[dt.datetime] = field(default_factory=list)  # fire times to start now, oldest first
    cancel: list[str] = field(default_factory=list)  # active runs to cancel (Replace)
    pause: bool = False  # pauseOnFailure reached: suspend the schedule
    wake: dt.datetime | None = None  # when to tick again (None: suspended, events only)
    backfill: list[dt.datetime] = field(default_factory=list)  # spec.schedule.backfill's times, once
    # The fire time `wake` is for, when it will start as things stand (fire_ahead): the timer then
    # creates its run before reading anything, and only then ticks.
    fire: dt.datetime | None = None
    ahead: dict[str, Any] | None = None  # its run's manifest (the handler builds it)
    ahead_forbid: bool = False  # under Forbid: a run starting before the time withdraws `fire`


def zone(schedule: Doc) -> str:
    return str(schedule.get("timeZone") or "UTC")


def streak_views(runs: Sequence[Doc]) -> list[dict[str, Any]]:
    """WorkflowRuns in the shape schedule.failure_streak reads (scheduled ones only count)."""
    views = []
    for run in runs:
        when = (run.get("spec") or {}).get("scheduledTime")
        if when:
            phase = (run.get("status") or {}).get("phase")
            views.append(
                {"spec": {"trigger": Trigger.SCHEDULE, "scheduledTime": when}, "status": {"phase": phase}}
            )
    return views


def active(runs: Sequence[Doc], exclude: set[str]) -> list[str]:
    """Names of runs not ended (and not cancelled already), but those in `exclude`: the runs of the
    times due now, which an interrupted earlier tick may have created."""
    ended = {p.value for p in w.RunPhase if p.terminal}
    return sorted(
        r["metadata"]["name"]
        for r in runs
        if (r.get("status") or {}).get("phase") not in ended
        and not (r.get("spec") or {}).get("cancel")
        and r["metadata"]["name"] not in exclude
    )


def record_skipped(
    state: ScheduleState, times: Sequence[dt.datetime], count: int, reason: w.SkipReason
) -> ScheduleState:
    """Add `count` skipped fire times (first and last of `times`) to the bookkeeping."""
    if not count or not times:
        return state
    last: SkippedRuns = {
        "count": count,
        "first": rfc3339(times[0]),
        "last": rfc3339(times[-1]),
        "reason": reason.value,
    }
    return {**state, "skippedRuns": int(state.get("skippedRuns", 0)) + count, "lastSkipped": last}


def concurrency(
    policy: str, due: list[dt.datetime], running: list[str]
) -> tuple[list[dt.datetime], list[dt.datetime], list[str]]:
    """(times to start, times skipped by the policy, runs to cancel). Allow starts every due time in
    order; Forbid the oldest only and only when no run is active; Replace cancels the active runs
    and starts the newest (an older due time would be replaced at once anyway)."""
    if not due or policy == ConcurrencyPolicy.ALLOW:
        return due, [], []
    if policy == ConcurrencyPolicy.REPLACE:
        return due[-1:], due[:-1], running
    if running:
        return [], due, []
    return due[:1], due[1:], []


def state_of(schedule: Schedule, status: Doc, now: dt.datetime) -> ScheduleState:
    """The bookkeeping of this schedule; fresh (nothing before `now` runs) when new, edited, resumed."""
    state: ScheduleState | None = status.get("scheduleState")
    if not state or state.get("signature") != signature(schedule):
        return fresh_state(schedule, state, now)
    return state.copy()


def with_backfill(step: Tick, schedule: Schedule) -> Tick:
    """Add the times of a backfill range not started yet (scheduleState.backfilled names the last
    one started): an explicit request, so neither suspend nor the concurrency policy hold it back.
    Its runs have the names of their fire times, so a time that still has a run is not run again."""
    key = backfill_key(schedule)
    if key is None or step.state.get("backfilled") == key or backfill_error(schedule):
        return step
    step.backfill = backfill_times(schedule)
    step.state = {**step.state, "backfilled": key}
    return step


def tick(schedule: Schedule, key: str, status: Doc, runs: Sequence[Doc], now: dt.datetime) -> Tick:
    """One look at a schedule: `key` is namespace/name (the jitter's seed), `runs` the Workflow's
    WorkflowRuns. Idempotent: run twice on the same inputs, it plans the same fire times."""
    return with_backfill(_tick(schedule, key, status, runs, now), schedule)


def _tick(schedule: Schedule, key: str, status: Doc, runs: Sequence[Doc], now: dt.datetime) -> Tick:
    state = state_of(schedule, status, now)
    if schedule.get("suspend"):
        return Tick(state)
    jitter = dt.timedelta(seconds=jitter_of(key, schedule))
    horizon = now - jitter  # a fire time is due once it plus the jitter has passed
    state["consecutiveFailures"] = failure_streak(streak_views(runs), parse_time(state["since"]))
    limit = int((schedule.get("pauseOnFailure") or {}).get("consecutiveFailures") or 0)
    pause = limit > 0 and state["consecutiveFailures"] >= limit
    window = int(schedule.get("catchupWindowSeconds") or 0)
    most = int(schedule.get("maxCatchupRuns") or DEFAULT_MAX_CATCHUP) if window else 1
    through = parse_time(state.get("through") or state["since"])
    plan = catchup_plan(
        str(schedule["cron"]), zone(schedule), through, horizon, window or START_GRACE_SECONDS, most
    )
    if plan.through is not None:
        state["through"] = rfc3339(plan.through)
    if plan.skipped and plan.first_skipped and plan.last_skipped:
        times = [plan.first_skipped, plan.last_skipped]
        state = record_skipped(state, times, plan.skipped, w.SkipReason.CATCHUP_WINDOW)
    upcoming = next_fire_times(str(schedule["cron"]), zone(schedule), horizon, 1)[0]
    wake = min(upcoming + jitter, now + LOOK_AGAIN)
    if pause:
        return Tick(paused_state(state, now), pause=True, wake=wake)
    due = list(plan.due)
    names = {w.scheduled_run_name(key.split("/", 1)[1], int(t.timestamp())) for t in due}
    policy = str(schedule.get("concurrencyPolicy") or ConcurrencyPolicy.FORBID)
    start, refused, cancel = concurrency(policy, due, active(runs, names))
    state = record_skipped(state, refused, len(refused), w.SkipReason.CONCURRENCY_POLICY)
    # The wake is the next fire time's, not LOOK_AGAIN's: that time may be fired ahead.
    at = upcoming if wake == upcoming + jitter else None
    ahead = fire_ahead(at, policy, bool(active(runs, set()) or start))
    forbid = policy == ConcurrencyPolicy.FORBID
    return Tick(state, start, cancel, wake=wake, fire=ahead, ahead_forbid=forbid)


def fire_ahead(at: dt.datetime | None, policy: str, busy: bool) -> dt.datetime | None:
    """`at`, the next fire time, if it will start as things stand: Allow always, Forbid while no
    run is active (a run that starts in between withdraws it: handlers' Ticks.run_seen), Replace
    never (it cancels first). None: the timer's tick decides, reading everything first."""
    if at is not None and (
        policy == ConcurrencyPolicy.ALLOW or (policy == ConcurrencyPolicy.FORBID and not busy)
    ):
        return at
    return None


def build_run(workflow: Doc, when: dt.datetime) -> dict[str, Any]:
    """The WorkflowRun of one fire time: deterministic name, scheduledTime, labels, and owned by the
    Workflow (deleting the Workflow deletes its scheduled runs, and their steps with them)."""
    meta, schedule = workflow["metadata"], workflow["spec"]["schedule"]
    spec: WorkflowRunSpec = {"workflowRef": {"name": meta["name"]}, "scheduledTime": rfc3339(when)}
    if schedule.get("parameters"):
        spec["parameters"] = dict(schedule["parameters"])
    labels = {w.LABEL_WORKFLOW: meta["name"][:63], c.LABEL_TRIGGER: Trigger.SCHEDULE.value}
    if owner_label := (meta.get("labels") or {}).get(c.LABEL_OWNER):
        labels[c.LABEL_OWNER] = owner_label  # the run and its steps belong to the Workflow's owner
    owner = {
        "apiVersion": c.API_VERSION,
        "kind": w.WORKFLOW_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "blockOwnerDeletion": False,
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": w.WORKFLOW_RUN_KIND,
        "metadata": {
            "name": w.scheduled_run_name(meta["name"], int(when.timestamp())),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def last_schedule_time(runs: Sequence[Doc], started: Sequence[dt.datetime]) -> str | None:
    """status.lastScheduleTime: the newest fire time that has a run."""
    times = [
        parse_time(str(r["spec"]["scheduledTime"]))
        for r in runs
        if (r.get("spec") or {}).get("scheduledTime")
    ]
    times += list(started)
    return rfc3339(max(times)) if times else None


def runs_to_prune(
    runs: Sequence[Doc], limits: Mapping[str, Any], last_run: Mapping[str, object] | None = None
) -> list[str]:
    """Names of finished runs beyond the Workflow's historyLimits, oldest first. `last_run` (the
    Workflow's status.lastRun) counts as ended with its phase even before its own status says so:
    the run controller writes it first, and its write is what wakes this."""
    last = dict(last_run or {})

    def phase_of(run: Doc) -> str:
        if run["metadata"]["name"] == last.get("name") and last.get("phase"):
            return str(last["phase"])
        return str((run.get("status") or {}).get("phase") or "")

    def finished(phase: str) -> list[Doc]:
        done = [r for r in runs if phase_of(r) == phase]
        return sorted(done, key=history_order, reverse=True)

    keep_ok, keep_bad = int(limits.get("succeeded", 10)), int(limits.get("failed", 5))
    old = finished(w.RunPhase.SUCCEEDED)[keep_ok:] + finished(w.RunPhase.FAILED)[keep_bad:]
    return [r["metadata"]["name"] for r in sorted(old, key=history_order)]
