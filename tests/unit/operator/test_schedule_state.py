"""The pure bookkeeping of a schedule: upcomingRuns, edits, catch-up steps, pauseOnFailure, jitter."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from agentry_common.models import AgentStatus, ScheduleSpec
from agentry_operator.builders.cronjob import TICK_DEADLINE_SECONDS, build_cronjob
from agentry_operator.firetimes import jitter_seconds
from agentry_operator.schedule import (
    CATCHUP_GRACE,
    backfill_error,
    catchup_due,
    failure_streak,
    fresh_state,
    parse_time,
    rfc3339,
    schedule_changed,
    schedule_step,
    signature,
    upcoming_runs,
    with_backfill,
)
from agentry_operator.settings import Settings
from agentry_operator.tick import ENV_TICK_DELAY

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 5, 1, 10, 5, tzinfo=dt.UTC)
HOURLY: dict[str, Any] = {"cron": "0 * * * *", "timeZone": "UTC"}


def run(hour: int, phase: str | None, trigger: str = "Schedule") -> dict[str, Any]:
    when = dt.datetime(2026, 5, 1, hour, tzinfo=dt.UTC)
    return {
        "metadata": {"name": f"r{hour}"},
        "spec": {"trigger": trigger, "scheduledTime": rfc3339(when)},
        "status": {"phase": phase} if phase else {},
    }


def test_upcoming_runs_are_five_rfc3339_utc_times_with_jitter() -> None:
    plain = upcoming_runs({"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}, "ns/a", NOW)
    assert len(plain) == 5 and all(t.endswith("Z") for t in plain)
    assert plain[0] == "2026-05-02T00:30:00Z"  # 02:30 CEST
    jittered = upcoming_runs({**HOURLY, "jitterSeconds": 600}, "ns/a", NOW)
    offset = jitter_seconds("ns/a", 600)
    assert parse_time(jittered[0]) - dt.datetime(2026, 5, 1, 11, tzinfo=dt.UTC) == dt.timedelta(
        seconds=offset
    )
    assert upcoming_runs({**HOURLY, "suspend": True}, "ns/a", NOW) == []
    AgentStatus.model_validate({"upcomingRuns": plain})  # the model accepts what the operator writes


def test_an_edit_or_resume_makes_a_fresh_state_and_a_new_cronjob() -> None:
    old = signature(HOURLY)
    assert not schedule_changed(old, HOURLY)
    assert schedule_changed(old, {**HOURLY, "cron": "15 * * * *"})
    assert schedule_changed(old, {**HOURLY, "timeZone": "Asia/Seoul"})
    assert not schedule_changed(old, {**HOURLY, "suspend": True})  # pausing needs no new CronJob
    assert schedule_changed(signature({**HOURLY, "suspend": True}), HOURLY)  # resuming does
    state = fresh_state(HOURLY, {"skippedRuns": 4, "signature": "x", "consecutiveFailures": 2}, NOW)
    assert state["since"] == state["through"] == rfc3339(NOW)
    assert (state["skippedRuns"], state["consecutiveFailures"]) == (4, 0)


def test_a_fresh_state_never_catches_up_times_before_the_edit() -> None:
    schedule = {**HOURLY, "catchupWindowSeconds": 86400, "maxCatchupRuns": 10}
    state = fresh_state(schedule, None, NOW)
    assert schedule_step(schedule, "ns/a", state, [], NOW + dt.timedelta(minutes=1)).create == []


def test_catchup_step_after_downtime() -> None:
    schedule = {**HOURLY, "catchupWindowSeconds": 3 * 3600, "maxCatchupRuns": 10}
    state = {
        "signature": signature(schedule),
        "since": "2026-04-30T00:00:00Z",
        "through": "2026-05-01T00:00:00Z",
    }
    step = schedule_step(schedule, "ns/a", state, [], NOW)
    # In the 3 h window before now - grace (10:03:30): 08:00, 09:00, 10:00; 01:00..07:00 skipped.
    assert dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC) < NOW - CATCHUP_GRACE
    assert step.create == [dt.datetime(2026, 5, 1, h, tzinfo=dt.UTC) for h in (8, 9, 10)]
    assert step.state["through"] == "2026-05-01T10:00:00Z"
    assert step.state["skippedRuns"] == 7
    assert step.state["lastSkipped"] == {
        "count": 7,
        "first": "2026-05-01T01:00:00Z",
        "last": "2026-05-01T07:00:00Z",
    }
    again = schedule_step(schedule, "ns/a", step.state, [], NOW)  # the next round: nothing new
    assert again.create == [] and again.state["skippedRuns"] == 7


def test_without_a_window_the_watermark_follows_the_clock() -> None:
    state = {
        "signature": signature(HOURLY),
        "since": "2026-04-30T00:00:00Z",
        "through": "2026-05-01T00:00:00Z",
    }
    step = schedule_step(HOURLY, "ns/a", state, [], NOW)
    assert step.create == [] and step.state["through"] == rfc3339(NOW - CATCHUP_GRACE)


def test_failure_streak_counts_failed_scheduled_runs_since_the_schedule_took_effect() -> None:
    since = dt.datetime(2026, 5, 1, 2, tzinfo=dt.UTC)
    runs = [
        run(1, "Failed"),
        run(3, "Succeeded"),
        run(4, "Failed"),
        run(5, "Skipped"),
        run(6, "Failed"),
        run(7, "Running"),
        run(8, "Failed", trigger="Manual"),
    ]
    assert failure_streak(runs, since) == 2  # 6 and 4; 5 skipped and 7 running neither break nor count
    assert failure_streak([run(1, "Failed"), run(2, "Failed")], since) == 1  # 1 is before `since`


def test_pause_on_failure() -> None:
    schedule = {**HOURLY, "pauseOnFailure": {"consecutiveFailures": 2}}
    state = {"signature": signature(schedule), "since": "2026-05-01T00:00:00Z", "through": rfc3339(NOW)}
    assert not schedule_step(schedule, "ns/a", state, [run(8, "Failed")], NOW).pause
    step = schedule_step(schedule, "ns/a", state, [run(8, "Failed"), run(9, "Failed")], NOW)
    assert step.pause and step.state["consecutiveFailures"] == 2
    suspended = copy.deepcopy(schedule) | {"suspend": True}
    assert not schedule_step(suspended, "ns/a", state, [run(8, "Failed"), run(9, "Failed")], NOW).pause
    # Resumed before the operator saw it suspended: the state the pause wrote starts a new streak.
    later = NOW + dt.timedelta(minutes=1)
    resumed = schedule_step(schedule, "ns/a", step.state, [run(8, "Failed"), run(9, "Failed")], later)
    assert not resumed.pause and resumed.state["consecutiveFailures"] == 0 and not resumed.create


def test_guest_bounds_in_the_model() -> None:
    for bad in (
        {"catchupWindowSeconds": 86401},
        {"maxCatchupRuns": 11},
        {"jitterSeconds": 601},
        {"pauseOnFailure": {"consecutiveFailures": 0}},
    ):
        with pytest.raises(ValueError):
            ScheduleSpec.model_validate({"cron": "* * * * *", **bad})


def test_cronjob_carries_jitter_and_bounds_its_own_lookback() -> None:
    agent = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "news", "namespace": "ns", "uid": "u"},
        "spec": {"schedule": {"cron": "* * * * *", "jitterSeconds": 300, "catchupWindowSeconds": 600}},
    }
    cj = build_cronjob(agent, Settings())
    job = cj["spec"]["jobTemplate"]["spec"]
    env = {e["name"]: e.get("value") for e in job["template"]["spec"]["containers"][0]["env"]}
    delay = jitter_seconds("ns/news", 300)
    assert env[ENV_TICK_DELAY] == str(delay)
    assert job["activeDeadlineSeconds"] == TICK_DEADLINE_SECONDS + delay
    assert cj["spec"]["startingDeadlineSeconds"] == 600
    agent["spec"]["schedule"]["startingDeadlineSeconds"] = 120
    assert build_cronjob(agent, Settings())["spec"]["startingDeadlineSeconds"] == 120


def test_catchup_due_once_the_next_run_is_past() -> None:
    agent: dict[str, Any] = {
        "spec": {"schedule": {**HOURLY, "catchupWindowSeconds": 3600}},
        "status": {"upcomingRuns": ["2026-05-01T10:00:00Z"]},
    }
    assert not catchup_due(agent, dt.datetime(2026, 5, 1, 10, 0, 30, tzinfo=dt.UTC))
    assert catchup_due(agent, dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC) + CATCHUP_GRACE)
    agent["spec"]["schedule"].pop("catchupWindowSeconds")
    assert not catchup_due(agent, dt.datetime(2026, 5, 2, tzinfo=dt.UTC))


def test_backfill_runs_a_range_once_and_is_bounded() -> None:
    schedule = {**HOURLY, "backfill": {"start": "2026-04-01T08:00:00Z", "end": "2026-04-01T10:30:00Z"}}
    state = {"signature": signature(schedule), "since": rfc3339(NOW), "through": rfc3339(NOW)}
    step = with_backfill(schedule_step(schedule, "ns/a", state, [], NOW), schedule)
    assert step.backfill == [dt.datetime(2026, 4, 1, h, tzinfo=dt.UTC) for h in (8, 9, 10)]  # start inclusive
    assert step.state["backfilled"] == "2026-04-01T08:00:00Z/2026-04-01T10:30:00Z"
    again = with_backfill(schedule_step(schedule, "ns/a", step.state, [], NOW), schedule)
    assert again.backfill == []  # started once
    assert backfill_error(schedule) is None
    wide = {**HOURLY, "backfill": {"start": "2026-04-01T00:00:00Z", "end": "2026-04-01T10:00:00Z"}}
    assert "more than 10 runs" in str(backfill_error(wide))  # 11 runs
    bad = {**HOURLY, "backfill": {"start": "yesterday", "end": "2026-04-01T10:00:00Z"}}
    assert "spec.schedule.backfill" in str(backfill_error(bad))
    assert with_backfill(schedule_step(wide, "ns/a", state, [], NOW), wide).backfill == []
