"""A Workflow's schedule, pure (workflows/schedule.py): run names, fire times over DST, catch-up,
concurrency policies, pauseOnFailure, edits; and a cancelled run in the planner."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentry_common import workflows as w
from agentry_common.models import Phase
from agentry_operator.handlers.workflow_schedule import schedule_errors
from agentry_operator.schedule import jitter_of, rfc3339, signature
from agentry_operator.workflows import planner
from agentry_operator.workflows import schedule as sched
from agentry_operator.workflows.step import Attempt

pytestmark = pytest.mark.unit

KEY = "ns/brief"
UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def status(schedule: dict[str, Any], since: str, through: str | None = None) -> dict[str, Any]:
    """A status whose bookkeeping belongs to `schedule`, watermark at `through` (default `since`)."""
    state = {"signature": signature(schedule), "since": since, "through": through or since}
    return {"scheduleState": state}


def run(name: str, scheduled: str | None, phase: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": {"workflowRef": {"name": "brief"}, **spec}}
    if scheduled:
        body["spec"]["scheduledTime"] = scheduled
    if phase:
        body["status"] = {"phase": phase}
    return body


def fire_times(schedule: dict[str, Any], since: str, now: str) -> list[str]:
    """Every fire time started by one tick per minute from `since` to `now` (the watermark carried)."""
    st, started = status(schedule, since), []
    clock, end = at(since), at(now)
    while clock <= end:
        step = sched.tick(schedule, KEY, st, [], clock)
        started += [rfc3339(t) for t in step.start]
        st = {"scheduleState": step.state}
        clock += dt.timedelta(minutes=1)
    return started


def test_run_names_are_deterministic_short_and_distinct() -> None:
    assert w.scheduled_run_name("brief", 1767600000) == "brief-1767600000"
    long_a, long_b = "a" * 35 + "-one", "a" * 35 + "-two"
    names = {w.scheduled_run_name(n, 1767600000) for n in (long_a, long_b)}
    assert len(names) == 2 and all(len(n) <= w.MAX_RUN_NAME for n in names)
    assert w.scheduled_run_name(long_a, 1767600000) == w.scheduled_run_name(long_a, 1767600000)
    assert w.scheduled_run_name(long_a, 1767600000) != w.scheduled_run_name(long_a, 1767600060)


def test_weekdays_0730_seoul_fire_at_2230_utc_the_day_before_weekdays_only() -> None:
    schedule = {"cron": "30 7 * * 1-5", "timeZone": "Asia/Seoul"}
    # Friday 2026-01-09 to Tuesday 2026-01-13 in Seoul (no DST there): Fri, Mon, Tue, never the weekend.
    got = fire_times(schedule, "2026-01-08T22:00:00+00:00", "2026-01-12T23:00:00+00:00")
    assert got == ["2026-01-08T22:30:00Z", "2026-01-11T22:30:00Z", "2026-01-12T22:30:00Z"]


def test_new_york_skipped_and_repeated_local_times_run_once() -> None:
    spring = {"cron": "30 2 * * *", "timeZone": "America/New_York"}  # 2026-03-08 02:00 -> 03:00
    got = fire_times(spring, "2026-03-07T06:00:00+00:00", "2026-03-09T08:00:00+00:00")
    # 03-07 02:30 EST, 03-08 at the transition (03:00 EDT = 07:00Z), 03-09 02:30 EDT.
    assert got == ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]
    fall = {"cron": "30 1 * * *", "timeZone": "America/New_York"}  # 2026-11-01 02:00 -> 01:00
    got = fire_times(fall, "2026-10-31T05:00:00+00:00", "2026-11-02T07:00:00+00:00")
    # 01:30 EDT on 11-01 happens twice: once, the first (05:30Z); the second (06:30Z) never.
    assert got == ["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]


def test_one_tick_after_downtime_starts_the_window_in_order_and_records_the_rest() -> None:
    schedule = {
        "cron": "0 * * * *",
        "catchupWindowSeconds": 3 * 3600,
        "maxCatchupRuns": 5,
        "concurrencyPolicy": "Allow",
    }
    step = sched.tick(
        schedule, KEY, status(schedule, "2026-01-05T00:30:00Z"), [], at("2026-01-05T10:10:00+00:00")
    )
    assert [rfc3339(t) for t in step.start] == [
        "2026-01-05T08:00:00Z",
        "2026-01-05T09:00:00Z",
        "2026-01-05T10:00:00Z",
    ]
    assert step.state["through"] == "2026-01-05T10:00:00Z"
    assert step.state["skippedRuns"] == 7  # 01:00 .. 07:00
    assert step.state["lastSkipped"] == {
        "count": 7,
        "first": "2026-01-05T01:00:00Z",
        "last": "2026-01-05T07:00:00Z",
        "reason": "CatchupWindow",
    }
    again = sched.tick(schedule, KEY, {"scheduleState": step.state}, [], at("2026-01-05T10:10:30+00:00"))
    assert again.start == [] and again.state["skippedRuns"] == 7  # the watermark moved: nothing twice


def test_without_a_window_a_time_is_started_late_within_the_grace_only() -> None:
    schedule = {"cron": "0 * * * *", "concurrencyPolicy": "Allow"}
    late = sched.tick(
        schedule, KEY, status(schedule, "2026-01-05T09:30:00Z"), [], at("2026-01-05T10:04:00+00:00")
    )
    assert [rfc3339(t) for t in late.start] == ["2026-01-05T10:00:00Z"]
    too_late = sched.tick(
        schedule, KEY, status(schedule, "2026-01-05T09:30:00Z"), [], at("2026-01-05T10:06:00+00:00")
    )
    assert too_late.start == [] and too_late.state["lastSkipped"]["first"] == "2026-01-05T10:00:00Z"


def test_an_edit_or_a_resume_starts_nothing_before_it() -> None:
    old = {"cron": "0 * * * *", "catchupWindowSeconds": 3600}
    new = {**old, "cron": "*/5 * * * *"}
    now = at("2026-01-05T10:10:00+00:00")
    step = sched.tick(new, KEY, status(old, "2026-01-05T08:00:00Z"), [], now)
    assert (
        step.start == [] and step.state["since"] == rfc3339(now) and step.state["signature"] == signature(new)
    )
    resumed = sched.tick(old, KEY, status({**old, "suspend": True}, "2026-01-05T08:00:00Z"), [], now)
    assert resumed.start == [] and resumed.state["since"] == rfc3339(now)
    suspended = sched.tick({**old, "suspend": True}, KEY, status(old, "2026-01-05T08:00:00Z"), [], now)
    assert suspended.start == [] and suspended.wake is None


def test_jitter_delays_the_start_and_the_wake_by_a_fixed_offset() -> None:
    schedule = {"cron": "0 * * * *", "jitterSeconds": 600}
    offset = jitter_of(KEY, schedule)
    assert 0 < offset <= 600  # this key's offset (a fixed hash of it)
    st = status(schedule, "2026-01-05T09:30:00Z")
    before = sched.tick(
        schedule, KEY, st, [], at("2026-01-05T10:00:00+00:00") + dt.timedelta(seconds=offset - 1)
    )
    assert before.start == [] and before.wake == at("2026-01-05T10:00:00+00:00") + dt.timedelta(
        seconds=offset
    )
    after = sched.tick(schedule, KEY, st, [], at("2026-01-05T10:00:00+00:00") + dt.timedelta(seconds=offset))
    assert [rfc3339(t) for t in after.start] == ["2026-01-05T10:00:00Z"]


def test_concurrency_policies() -> None:
    base = {"cron": "0 * * * *", "catchupWindowSeconds": 3 * 3600}
    st, now = status(base, "2026-01-05T07:30:00Z"), at("2026-01-05T10:10:00+00:00")
    busy = [run("manual", None, "Running"), run("done", None, "Succeeded")]
    allow = sched.tick({**base, "concurrencyPolicy": "Allow"}, KEY, st, busy, now)
    assert len(allow.start) == 3 and allow.cancel == []
    forbid = sched.tick({**base, "concurrencyPolicy": "Forbid"}, KEY, st, busy, now)
    assert forbid.start == [] and forbid.state["lastSkipped"]["count"] == 3
    assert forbid.state["lastSkipped"]["reason"] == "ConcurrencyPolicy"
    idle = sched.tick({**base, "concurrencyPolicy": "Forbid"}, KEY, st, busy[1:], now)
    assert [rfc3339(t) for t in idle.start] == ["2026-01-05T08:00:00Z"] and idle.state["skippedRuns"] == 2
    replace = sched.tick({**base, "concurrencyPolicy": "Replace"}, KEY, st, busy, now)
    assert [rfc3339(t) for t in replace.start] == ["2026-01-05T10:00:00Z"] and replace.cancel == ["manual"]


def test_a_run_of_a_due_time_created_by_an_interrupted_tick_is_not_a_reason_to_skip_it() -> None:
    schedule = {"cron": "0 * * * *", "concurrencyPolicy": "Forbid"}
    st, now = status(schedule, "2026-01-05T09:30:00Z"), at("2026-01-05T10:00:30+00:00")
    first = sched.tick(schedule, KEY, st, [], now)
    name = w.scheduled_run_name("brief", int(first.start[0].timestamp()))
    # The operator died after creating the run, before writing the watermark: the same decision.
    again = sched.tick(schedule, KEY, st, [run(name, "2026-01-05T10:00:00Z", "Running")], now)
    assert again.start == first.start and "skippedRuns" not in again.state


def test_pause_on_failure_after_n_consecutive_failed_scheduled_runs() -> None:
    schedule = {"cron": "0 * * * *", "pauseOnFailure": {"consecutiveFailures": 2}}
    st, now = status(schedule, "2026-01-05T05:30:00Z"), at("2026-01-05T10:00:30+00:00")
    ok = [run("a", "2026-01-05T07:00:00Z", "Failed"), run("b", "2026-01-05T08:00:00Z", "Succeeded")]
    step = sched.tick(schedule, KEY, st, [*ok, run("c", "2026-01-05T09:00:00Z", "Failed")], now)
    assert not step.pause and step.state["consecutiveFailures"] == 1 and len(step.start) == 1
    two = [*ok, run("c", "2026-01-05T09:00:00Z", "Failed"), run("m", None, "Failed")]
    two.append(run("d", "2026-01-05T09:30:00Z", "Failed"))
    step = sched.tick(schedule, KEY, st, two, now)
    assert step.pause and step.start == [] and step.state["consecutiveFailures"] == 2
    before = sched.tick(schedule, KEY, status(schedule, "2026-01-05T09:10:00Z"), two, now)
    assert not before.pause  # failures before the schedule took effect do not count
    # Resumed before a tick saw it suspended: the state the pause wrote starts a new streak.
    again = sched.tick(schedule, KEY, {**st, "scheduleState": step.state}, two, now + dt.timedelta(seconds=5))
    assert not again.pause and again.state["consecutiveFailures"] == 0 and again.start == []


def test_the_scheduled_run() -> None:
    wf = {
        "metadata": {"name": "brief", "namespace": "ns", "uid": "u-1"},
        "spec": {"schedule": {"cron": "30 7 * * 1-5", "parameters": {"topic": "rust"}}},
    }
    body = sched.build_run(wf, at("2026-01-11T22:30:00+00:00"))
    assert body["metadata"]["name"] == w.scheduled_run_name(
        "brief", int(at("2026-01-11T22:30:00+00:00").timestamp())
    )
    assert body["metadata"]["labels"] == {w.LABEL_WORKFLOW: "brief", "agentry.dev/trigger": "Schedule"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert body["spec"] == {
        "workflowRef": {"name": "brief"},
        "scheduledTime": "2026-01-11T22:30:00Z",
        "parameters": {"topic": "rust"},
    }
    runs = [run("x", "2026-01-10T22:30:00Z"), run("y", None)]
    assert sched.last_schedule_time(runs, [at("2026-01-11T22:30:00+00:00")]) == "2026-01-11T22:30:00Z"
    assert sched.last_schedule_time(runs[1:], []) is None


def test_a_cancelled_run_cancels_its_running_steps_and_fails() -> None:
    spec = {
        "steps": [
            {"name": "a", "agentRef": {"name": "x"}},
            {"name": "b", "agentRef": {"name": "x"}, "dependsOn": ["a"]},
        ]
    }
    t0 = at("2026-01-05T10:00:00+00:00")
    attempt = Attempt(step="a", number=1, name="r-a-1", phase=Phase.RUNNING, created=t0, completed=None)
    plan = planner.plan(spec, t0, {"a": [attempt]}, t0 + dt.timedelta(seconds=5), cancelled=True)
    assert plan.cancels == ["r-a-1"] and plan.starts == []
    assert plan.phase == w.RunPhase.FAILED and plan.reason == w.RunReason.CANCELLED
    assert {n: v.phase.value for n, v in plan.steps.items()} == {"a": "Failed", "b": "Skipped"}


def test_runs_beyond_the_history_limits_are_pruned_oldest_first() -> None:
    def run(name: str, phase: str, created: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"phase": phase}}

    runs = [
        run("ok1", "Succeeded", "2026-01-01T00:00:00Z"),
        run("ok2", "Succeeded", "2026-01-02T00:00:00Z"),
        run("ok3", "Succeeded", "2026-01-03T00:00:00Z"),
        run("bad1", "Failed", "2026-01-01T12:00:00Z"),
        run("live", "Running", "2025-12-31T00:00:00Z"),
    ]
    assert sched.runs_to_prune(runs, {"succeeded": 1, "failed": 1}) == ["ok1", "ok2"]
    assert sched.runs_to_prune(runs, {"succeeded": 0, "failed": 0}) == ["ok1", "bad1", "ok2", "ok3"]
    assert sched.runs_to_prune(runs, {}) == []  # defaults: 10 and 5
    # The run named in the Workflow's lastRun has ended, even before its own status says so.
    assert sched.runs_to_prune(runs, {"succeeded": 1}, {"name": "live", "phase": "Succeeded"}) == [
        "live",
        "ok1",
        "ok2",
    ]
    # Made, run and ended within one second: the later start, then end, then name is the newer.
    same = "2026-01-05T00:00:00Z"
    first = {"metadata": {"name": "r2", "creationTimestamp": same}, "status": {"phase": "Succeeded"}}
    first["status"] |= {"startTime": same, "completionTime": same}
    later = {"metadata": {"name": "r1", "creationTimestamp": same}, "status": {"phase": "Succeeded"}}
    later["status"] |= {"startTime": same, "completionTime": "2026-01-05T00:00:01Z"}
    assert sched.runs_to_prune([first, later], {"succeeded": 1}) == ["r2"]
    tied = [run("a", "Succeeded", same), run("b", "Succeeded", same)]
    assert sched.runs_to_prune(tied, {"succeeded": 1}) == ["a"]


def test_a_backfill_range_starts_its_times_once_whatever_suspend_and_the_policy_say() -> None:
    schedule = {
        "cron": "30 7 * * 1-5",
        "timeZone": "Asia/Seoul",
        "suspend": True,
        "backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-07T00:00:00Z"},
    }
    st, now = status(schedule, "2026-01-10T00:00:00Z"), at("2026-01-10T00:00:30+00:00")
    busy = [run("manual", None, "Running")]  # Forbid would skip a fire time now
    step = sched.tick(schedule, KEY, st, busy, now)
    # Weekdays at 07:30 Seoul inside Jan 1 - Jan 7 UTC: Fri Jan 2, Mon 5, Tue 6, Wed 7 (22:30 UTC before).
    assert [rfc3339(t) for t in step.backfill] == [
        "2026-01-01T22:30:00Z",
        "2026-01-04T22:30:00Z",
        "2026-01-05T22:30:00Z",
        "2026-01-06T22:30:00Z",
    ]
    assert step.start == [] and step.state["backfilled"] == "2026-01-01T00:00:00Z/2026-01-07T00:00:00Z"
    assert sched.tick(schedule, KEY, {"scheduleState": step.state}, busy, now).backfill == []  # once
    wider = {**schedule, "backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}}
    assert sched.tick(wider, KEY, {"scheduleState": step.state}, busy, now).backfill == []  # > 10 runs
    assert schedule_errors(wider) == ["spec.schedule.backfill covers more than 10 runs: narrow the range"]


def test_the_next_fire_time_is_kept_ahead_only_when_it_will_start_as_things_stand() -> None:
    hourly = {"cron": "0 * * * *"}
    st, now = status(hourly, "2026-01-05T09:30:00Z"), at("2026-01-05T09:57:00+00:00")
    nxt = at("2026-01-05T10:00:00+00:00")  # within LOOK_AGAIN: the wake is for it
    allow = sched.tick({**hourly, "concurrencyPolicy": "Allow"}, KEY, st, [run("m", None, "Running")], now)
    assert allow.fire == nxt and allow.wake == nxt
    forbid = {**hourly, "concurrencyPolicy": "Forbid"}
    assert sched.tick(forbid, KEY, st, [], now).fire == nxt
    assert sched.tick(forbid, KEY, st, [run("m", None, "Running")], now).fire is None
    assert sched.tick(forbid, KEY, st, [run("m", None, "Failed")], now).fire == nxt  # ended: no hold
    assert sched.tick({**hourly, "concurrencyPolicy": "Replace"}, KEY, st, [], now).fire is None
    daily = {"cron": "0 6 * * *", "concurrencyPolicy": "Allow"}  # the wake is LOOK_AGAIN's, no fire
    far = sched.tick(daily, KEY, status(daily, "2026-01-05T09:30:00Z"), [], now)
    assert far.fire is None and far.wake == now + sched.LOOK_AGAIN
    assert sched.tick({**forbid, "suspend": True}, KEY, st, [], now).fire is None


def test_a_run_started_now_under_forbid_holds_the_next_time_back() -> None:
    forbid = {"cron": "* * * * *", "concurrencyPolicy": "Forbid"}
    st, now = status(forbid, "2026-01-05T09:30:00Z"), at("2026-01-05T09:31:00.5+00:00")
    step = sched.tick(forbid, KEY, st, [], now)
    assert [rfc3339(t) for t in step.start] == ["2026-01-05T09:31:00Z"] and step.fire is None
