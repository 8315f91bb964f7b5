"""Cron and time-zone rules: validation (what CEL cannot check), run times, and the pure step of a
schedule's bookkeeping (status.scheduleState: catch-up watermark, skipped runs, failure streak)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from agentry_common.models import Phase, Trigger

from .builders.kinds import Schedule, ScheduleState, SkippedRuns
from .firetimes import CatchupPlan, catchup_plan, iter_fire_times, jitter_seconds, next_fire_times

# Kubernetes CronJobs accept these macros; croniter knows them too.
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
UPCOMING = 5
MAX_BACKFILL_RUNS = 10  # a guest's backfill is bounded like its catch-up
# The CronJob's tick creates a run within seconds of its time (+ jitter); the operator catches up only
# on times older than this, so the two rarely race (and a race is a 409 on the same name anyway).
CATCHUP_GRACE = dt.timedelta(seconds=90)


def cron_error(expr: str) -> str | None:
    """None if the cron expression is valid for a CronJob, else a message naming the problem."""
    if expr in MACROS:
        return None
    if len(expr.split()) != 5:
        return f"spec.schedule.cron {expr!r} must have 5 fields (minute hour day month weekday)"
    if not croniter.is_valid(expr):
        return f"spec.schedule.cron {expr!r} is not a valid cron expression"
    return None


def timezone_error(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"spec.schedule.timeZone {name!r} is not a known IANA time zone (e.g. Asia/Seoul)"
    return None


def backfill_times(schedule: Schedule) -> list[dt.datetime]:
    """The fire times of spec.schedule.backfill's range, inclusive (at most MAX_BACKFILL_RUNS + 1,
    so a range with too many is seen as such without walking all of it)."""
    start = parse_time(schedule["backfill"]["start"])
    end = parse_time(schedule["backfill"]["end"])
    times: list[dt.datetime] = []
    for when in iter_fire_times(schedule["cron"], _tz(schedule), start - dt.timedelta(microseconds=1)):
        if when > end or len(times) > MAX_BACKFILL_RUNS:
            break
        times.append(when)
    return times


def backfill_error(schedule: Schedule) -> str | None:
    """None if spec.schedule.backfill (if any) is a range of at most MAX_BACKFILL_RUNS runs."""
    if not schedule.get("backfill"):
        return None
    try:
        times = backfill_times(schedule)
    except ValueError:
        return "spec.schedule.backfill.start and .end must be RFC 3339 times (e.g. 2026-05-01T00:00:00Z)"
    if len(times) > MAX_BACKFILL_RUNS:
        return f"spec.schedule.backfill covers more than {MAX_BACKFILL_RUNS} runs: narrow the range"
    return None


def backfill_key(schedule: Schedule) -> str | None:
    backfill = schedule.get("backfill")
    return f"{backfill['start']}/{backfill['end']}" if backfill else None


def next_run(expr: str, tz: str, after: dt.datetime | None = None) -> dt.datetime:
    """The next tick strictly after `after` (default now), in UTC, DST handled (firetimes.py)."""
    return next_fire_times(expr, tz, after or dt.datetime.now(dt.UTC), 1)[0]


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def _tz(schedule: Schedule) -> str:
    return str(schedule.get("timeZone") or "UTC")


def signature(schedule: Schedule) -> str:
    """What makes a schedule another one: a change of any of these never runs a time before it."""
    return json.dumps([schedule["cron"], _tz(schedule), bool(schedule.get("suspend"))])


def schedule_changed(old: str | None, schedule: Schedule) -> bool:
    """True when the CronJob must be made anew (cron or zone edited, or resumed): the CronJob
    controller would otherwise start a 'missed' time of the new schedule at once."""
    if not old:
        return False
    cron, tz, suspended = json.loads(old)
    return (cron, tz) != (schedule["cron"], _tz(schedule)) or (suspended and not schedule.get("suspend"))


def jitter_of(key: str, schedule: Schedule) -> int:
    return jitter_seconds(key, int(schedule.get("jitterSeconds") or 0))


def upcoming_runs(schedule: Schedule, key: str, now: dt.datetime) -> list[str]:
    """status.upcomingRuns: the next run times with the Agent's jitter (empty while suspended)."""
    if schedule.get("suspend"):
        return []
    offset = dt.timedelta(seconds=jitter_of(key, schedule))
    return [rfc3339(t + offset) for t in next_fire_times(schedule["cron"], _tz(schedule), now, UPCOMING)]


def catchup_due(agent: dict[str, Any], now: dt.datetime) -> bool:
    """Whether a catch-up schedule's next run is past (+ grace) with no refresh since: the tick may
    not have come (a failing tick pod, a controller down), so the operator looks. Cheap: one parse."""
    schedule = agent["spec"].get("schedule") or {}
    upcoming = (agent.get("status") or {}).get("upcomingRuns") or []
    if not schedule.get("catchupWindowSeconds") or schedule.get("suspend") or not upcoming:
        return False
    return parse_time(upcoming[0]) + CATCHUP_GRACE <= now


def fresh_state(schedule: Schedule, previous: ScheduleState | None, now: dt.datetime) -> ScheduleState:
    """scheduleState for a new, edited or resumed schedule: nothing before `now` is ever run."""
    stamp = rfc3339(now)
    return {
        **(previous or {}),
        "signature": signature(schedule),
        "since": stamp,
        "through": stamp,
        "consecutiveFailures": 0,
    }


def paused_state(state: ScheduleState, now: dt.datetime) -> ScheduleState:
    """The bookkeeping written with a pauseOnFailure: a new streak starts at the pause (since), and
    nothing before it is caught up. A resume the operator never saw suspended (the user was quicker
    than the next look) then neither counts the old failures nor pauses the schedule again."""
    stamp = rfc3339(now)
    return {**state, "since": stamp, "through": stamp}


def failure_streak(executions: list[dict[str, Any]], since: dt.datetime) -> int:
    """Failed scheduled runs in a row, newest first, among those scheduled at or after `since`.
    Runs still going, skipped or cancelled neither break nor extend the streak."""
    runs = [
        e
        for e in executions
        if e["spec"].get("trigger") == Trigger.SCHEDULE
        and e["spec"].get("scheduledTime")
        and parse_time(e["spec"]["scheduledTime"]) >= since
    ]
    streak = 0
    for ex in sorted(runs, key=lambda e: parse_time(e["spec"]["scheduledTime"]), reverse=True):
        phase = (ex.get("status") or {}).get("phase")
        if phase == Phase.SUCCEEDED:
            break
        streak += phase == Phase.FAILED
    return streak


@dataclass
class ScheduleStep:
    state: ScheduleState
    create: list[dt.datetime] = field(default_factory=list)  # catch-up runs, oldest first
    plan: CatchupPlan | None = None
    pause: bool = False
    backfill: list[dt.datetime] = field(default_factory=list)  # a new backfill range's runs


def with_backfill(step: ScheduleStep, schedule: Schedule) -> ScheduleStep:
    """Add a backfill range not started yet (status.scheduleState.backfilled names the last one)."""
    key = backfill_key(schedule)
    if key is None or step.state.get("backfilled") == key or backfill_error(schedule):
        return step
    step.backfill = backfill_times(schedule)
    step.state = {**step.state, "backfilled": key}
    return step


def _skipped(state: ScheduleState, plan: CatchupPlan) -> ScheduleState:
    if not plan.skipped or plan.first_skipped is None or plan.last_skipped is None:
        return state
    last: SkippedRuns = {
        "count": plan.skipped,
        "first": rfc3339(plan.first_skipped),
        "last": rfc3339(plan.last_skipped),
    }
    return {**state, "skippedRuns": int(state.get("skippedRuns", 0)) + plan.skipped, "lastSkipped": last}


def schedule_step(
    schedule: Schedule,
    key: str,
    state: ScheduleState,
    executions: list[dict[str, Any]],
    now: dt.datetime,
) -> ScheduleStep:
    """One refresh of a schedule whose state matches its signature: the catch-up runs to create, the
    runs skipped, the new watermark, and whether pauseOnFailure suspends it now."""
    horizon = now - CATCHUP_GRACE - dt.timedelta(seconds=jitter_of(key, schedule))
    through = parse_time(state.get("through") or state["since"])
    if schedule.get("suspend"):  # nothing runs: the watermark follows the clock
        return ScheduleStep({**state, "through": rfc3339(max(through, horizon))})
    streak = failure_streak(executions, parse_time(state["since"]))
    state = {**state, "consecutiveFailures": streak}
    limit = int((schedule.get("pauseOnFailure") or {}).get("consecutiveFailures") or 0)
    pause = limit > 0 and streak >= limit
    window = int(schedule.get("catchupWindowSeconds") or 0)
    if pause:
        return ScheduleStep(paused_state(state, now), pause=True)
    if not window:
        return ScheduleStep({**state, "through": rfc3339(max(through, horizon))})
    plan = catchup_plan(
        schedule["cron"],
        _tz(schedule),
        through,
        horizon,
        int(window),
        int(schedule.get("maxCatchupRuns") or 3),
    )
    if plan.through is not None:
        state["through"] = rfc3339(plan.through)
    return ScheduleStep(_skipped(state, plan), plan.due, plan)


# --- The Operator backend's timers (handlers/agent_timers.py): what to fire, pure -------------------

# After a restart (or a leader's failover) the newest time missed this recently is still started, as
# the CronJob controller starts the most recent missed time; older ones are catch-up's (a window).
RESTART_GRACE = dt.timedelta(seconds=300)


def timer_signature(schedule: Schedule) -> str:
    """What re-arms an Agent's timer from now: its times (signature) or its jitter changed."""
    return json.dumps([signature(schedule), int(schedule.get("jitterSeconds") or 0)])


def timer_cursor(schedule: Schedule, status: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """Where a timer armed without one in memory starts: fire times after it are still to start.
    A schedule whose bookkeeping is of this very schedule (not new, edited or resumed since) starts
    RESTART_GRACE back, never before status.scheduleState.since; any other one from `now`."""
    state = status.get("scheduleState") or {}
    if state.get("signature") != signature(schedule) or not state.get("since"):
        return now
    return min(max(now - RESTART_GRACE, parse_time(str(state["since"]))), now)


def missed_since(schedule: Schedule, cursor: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The newest fire time in (cursor, now]: a time passed while no timer was armed."""
    newest = None
    for when in iter_fire_times(schedule["cron"], _tz(schedule), cursor):
        if when > now:
            return newest
        newest = when
    return newest
