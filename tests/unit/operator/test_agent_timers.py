"""The Operator schedule backend's timers: where a timer starts, what it fires after a restart, and
that a re-arm neither repeats nor skips a time (the API client is a recording stand-in here; the
real control plane is tests/integration/operator/test_schedule_semantics.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from lightkube import ApiError

from agentry_common.naming import scheduled_execution_name
from agentry_operator.handlers.agent_timers import AgentTimers, timed_schedule
from agentry_operator.handlers.state import State
from agentry_operator.schedule import (
    RESTART_GRACE,
    missed_since,
    parse_time,
    rfc3339,
    signature,
    timer_cursor,
)

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 5, 1, 10, 5, 30, tzinfo=dt.UTC)
EVERY_MINUTE: dict[str, Any] = {"cron": "* * * * *", "timeZone": "UTC", "backend": "Operator"}


def agent(schedule: dict[str, Any], status: dict[str, Any] | None = None, name: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": "ns", "generation": 1, "uid": "u"},
        "spec": {"instructions": "x", "schedule": schedule},
        "status": status or {},
    }


def kept_since(schedule: dict[str, Any], since: dt.datetime) -> dict[str, Any]:
    """A status whose bookkeeping is of `schedule` since `since` (an operator ran it before)."""
    stamp = rfc3339(since)
    return {"scheduleState": {"signature": signature(schedule), "since": stamp, "through": stamp}}


def test_a_new_or_edited_schedule_starts_from_now() -> None:
    assert timer_cursor(EVERY_MINUTE, {}, NOW) == NOW
    edited = {**EVERY_MINUTE, "cron": "*/5 * * * *"}
    assert timer_cursor(edited, kept_since(EVERY_MINUTE, NOW - dt.timedelta(hours=3)), NOW) == NOW


def test_a_kept_schedule_starts_the_grace_back_but_never_before_its_since() -> None:
    long_ago = kept_since(EVERY_MINUTE, NOW - dt.timedelta(days=2))
    assert timer_cursor(EVERY_MINUTE, long_ago, NOW) == NOW - RESTART_GRACE
    recent = NOW - dt.timedelta(seconds=100)
    assert timer_cursor(EVERY_MINUTE, kept_since(EVERY_MINUTE, recent), NOW) == recent.replace(microsecond=0)


def test_missed_since_is_the_newest_time_passed() -> None:
    assert missed_since(EVERY_MINUTE, NOW - RESTART_GRACE, NOW) == NOW.replace(second=0)
    assert missed_since(EVERY_MINUTE, NOW.replace(second=0), NOW) is None
    hourly = {**EVERY_MINUTE, "cron": "0 * * * *"}
    assert missed_since(hourly, NOW - dt.timedelta(minutes=6), NOW) == NOW.replace(minute=0, second=0)
    assert missed_since(hourly, NOW - RESTART_GRACE, NOW) is None  # 10:00 is before 10:00:30


@pytest.mark.parametrize(
    "schedule",
    [
        {**EVERY_MINUTE, "backend": "CronJob"},
        {"cron": "* * * * *"},  # the default backend is CronJob
        {**EVERY_MINUTE, "suspend": True},
        {**EVERY_MINUTE, "cron": "61 * * * *"},
        {**EVERY_MINUTE, "timeZone": "Mars/Olympus"},
    ],
)
def test_only_valid_running_operator_schedules_are_timed(schedule: dict[str, Any]) -> None:
    assert timed_schedule(agent(schedule)) is None


def test_an_agent_being_deleted_is_not_timed() -> None:
    going = agent(EVERY_MINUTE)
    going["metadata"]["deletionTimestamp"] = "2026-05-01T10:00:00Z"
    assert timed_schedule(going) is None and timed_schedule(agent(EVERY_MINUTE)) == EVERY_MINUTE


def test_an_agent_refused_for_this_generation_is_not_timed() -> None:
    refused = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "observedGeneration": 1}
    assert timed_schedule(agent(EVERY_MINUTE, {"conditions": [refused]})) is None
    older = {**refused, "observedGeneration": 0}  # refused before an edit: the edit is not judged yet
    assert timed_schedule(agent(EVERY_MINUTE, {"conditions": [older]})) == EVERY_MINUTE


class Recorder:
    """The API client's create: records names; answers 409 for names listed in `existing`."""

    def __init__(self, existing: set[str] | None = None) -> None:
        self.created: list[str] = []
        self.existing = existing or set()

    async def create(self, obj: Any) -> Any:
        name = obj.metadata.name
        if name in self.existing:
            raise ApiError(status={"code": 409, "message": "exists"})  # type: ignore[arg-type]
        self.created.append(name)
        self.existing.add(name)
        return obj


async def seen(timers: AgentTimers, body: dict[str, Any]) -> None:
    timers.state.seen_agent(body)
    timers.seen(body)
    await asyncio.sleep(0)
    while timers.tasks:
        await asyncio.gather(*timers.tasks)


def name_of(when: dt.datetime) -> str:
    return scheduled_execution_name("a", int(when.timestamp()))


def last_minute() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


async def test_after_a_restart_the_newest_missed_time_starts_once_then_the_next_is_armed() -> None:
    client = Recorder()
    timers = AgentTimers(client, State())  # type: ignore[arg-type]
    body = agent(EVERY_MINUTE, kept_since(EVERY_MINUTE, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    await seen(timers, body)
    assert client.created == [name_of(last_minute())]
    armed = timers.armed[("ns", "a")]
    assert armed.at == last_minute() + dt.timedelta(minutes=1) and armed.handle is not None
    await seen(timers, {**body, "status": {**body["status"], "lastRunTime": "x"}})  # a status event
    assert client.created == [name_of(last_minute())]  # same schedule: nothing fired again
    timers.forget(("ns", "a"))


async def test_a_time_already_started_or_pruned_is_not_created_again() -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    client = Recorder(existing={name_of(last_minute())})
    timers = AgentTimers(client, State())  # type: ignore[arg-type]
    await seen(timers, agent(EVERY_MINUTE, kept_since(EVERY_MINUTE, since)))
    assert client.created == []  # 409: the time has its Execution
    timers.forget(("ns", "a"))
    pruned = {**kept_since(EVERY_MINUTE, since), "archived": {"names": [name_of(last_minute())]}}
    client = Recorder()
    timers = AgentTimers(client, State())  # type: ignore[arg-type]
    await seen(timers, agent(EVERY_MINUTE, pruned))
    assert client.created == []  # it ran and went by historyLimits
    assert timers.armed[("ns", "a")].at == last_minute() + dt.timedelta(minutes=1)
    timers.forget(("ns", "a"))


async def test_an_edit_rearms_from_now_and_suspend_disarms() -> None:
    client = Recorder()
    timers = AgentTimers(client, State())  # type: ignore[arg-type]
    await seen(timers, agent(EVERY_MINUTE))  # new: nothing passed is run
    assert client.created == [] and ("ns", "a") in timers.armed
    hourly = {**EVERY_MINUTE, "cron": "0 * * * *"}
    await seen(
        timers, agent(hourly, kept_since(EVERY_MINUTE, dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)))
    )
    assert client.created == []  # an edit never fires a spurious run
    assert parse_time(rfc3339(timers.armed[("ns", "a")].at or NOW)).minute == 0
    await seen(timers, agent({**hourly, "suspend": True}))
    assert ("ns", "a") not in timers.armed and client.created == []
