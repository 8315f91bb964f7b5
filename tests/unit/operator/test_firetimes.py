"""Fire times across DST transitions (America/New_York, Europe/Berlin), jitter and the catch-up plan."""

from __future__ import annotations

import datetime as dt

import pytest

from agentry_operator.firetimes import (
    SKIPPED_COUNT_CAP,
    catchup_plan,
    jitter_seconds,
    next_fire_times,
    to_utc,
)
from agentry_operator.schedule import next_run

pytestmark = pytest.mark.unit
UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "cron", "after", "want"),
    [
        # New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC): 02:30 runs once at 03:00.
        (
            "America/New_York",
            "30 2 * * *",
            "2026-03-07T12:00:00",
            ["2026-03-08T07:00:00", "2026-03-09T06:30:00"],
        ),
        # Falls back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice, runs at the first (EDT).
        (
            "America/New_York",
            "30 1 * * *",
            "2026-10-31T12:00:00",
            ["2026-11-01T05:30:00", "2026-11-02T06:30:00"],
        ),
        # Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC).
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-03-28T12:00:00",
            ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
        ),
        # Falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 once, at 00:30 UTC (CEST).
        (
            "Europe/Berlin",
            "30 2 * * *",
            "2026-10-24T12:00:00",
            ["2026-10-25T00:30:00", "2026-10-26T01:30:00"],
        ),
    ],
)
def test_daily_run_across_transitions_runs_once(tz: str, cron: str, after: str, want: list[str]) -> None:
    assert next_fire_times(cron, tz, utc(after), 2) == [utc(w) for w in want]


def test_every_15_minutes_in_a_skipped_hour_runs_once_at_the_transition() -> None:
    times = next_fire_times("*/15 * * * *", "America/New_York", utc("2026-03-08T06:40:00"), 4)
    # 01:45 EST, then 02:00..02:45 (skipped) collapse into 03:00 EDT, then 03:15, 03:30.
    assert times == [
        utc(t)
        for t in ("2026-03-08T06:45:00", "2026-03-08T07:00:00", "2026-03-08T07:15:00", "2026-03-08T07:30:00")
    ]


def test_hourly_in_a_repeated_hour_runs_each_wall_time_once() -> None:
    times = next_fire_times("30 * * * *", "Europe/Berlin", utc("2026-10-24T23:00:00"), 4)
    # 01:30 CEST, 02:30 CEST (not again at 02:30 CET), 03:30 CET, 04:30 CET.
    assert times == [
        utc(t)
        for t in ("2026-10-24T23:30:00", "2026-10-25T00:30:00", "2026-10-25T02:30:00", "2026-10-25T03:30:00")
    ]


def test_starting_inside_a_repeated_hour_does_not_repeat_a_run() -> None:
    # After the first 02:30 (00:30 UTC) in Berlin, the next run is 03:30 CET, not the repeated 02:30.
    assert next_fire_times("30 2,3 * * *", "Europe/Berlin", utc("2026-10-25T00:30:00"), 1) == [
        utc("2026-10-25T02:30:00")
    ]


def test_to_utc_of_a_normal_time_and_agreement_with_next_run() -> None:
    zone = "Asia/Seoul"
    from zoneinfo import ZoneInfo

    assert to_utc(dt.datetime(2026, 5, 1, 9, 0), ZoneInfo(zone)) == utc("2026-05-01T00:00:00")
    after = utc("2026-05-01T00:00:00")
    assert next_fire_times("0 9 * * 1-5", zone, after, 1)[0] == next_run("0 9 * * 1-5", zone, after)


def test_macros() -> None:
    assert next_fire_times("@midnight", "UTC", utc("2026-05-01T10:00:00"), 1) == [utc("2026-05-02T00:00:00")]
    assert next_fire_times("@hourly", "UTC", utc("2026-05-01T10:00:00"), 1) == [utc("2026-05-01T11:00:00")]


def test_jitter_is_stable_bounded_and_spread() -> None:
    offsets = {jitter_seconds(f"ns/agent-{i}", 300) for i in range(200)}
    assert all(0 <= o <= 300 for o in offsets)
    assert len(offsets) > 100  # spread, not one value
    assert jitter_seconds("ns/a", 300) == jitter_seconds("ns/a", 300)
    assert jitter_seconds("ns/a", 0) == 0


def test_catchup_plan_runs_in_window_in_order_and_skips_the_rest() -> None:
    seen, now = utc("2026-05-01T00:00:00"), utc("2026-05-01T10:05:00")
    plan = catchup_plan("0 * * * *", "UTC", seen, now, window_seconds=3 * 3600, max_runs=10)
    assert plan.due == [utc(f"2026-05-01T{h:02d}:00:00") for h in (8, 9, 10)]
    assert plan.skipped == 7  # 01:00 .. 07:00
    assert (plan.first_skipped, plan.last_skipped) == (utc("2026-05-01T01:00:00"), utc("2026-05-01T07:00:00"))
    assert plan.through == utc("2026-05-01T10:00:00")


def test_catchup_plan_caps_due_runs_keeping_the_newest() -> None:
    seen, now = utc("2026-05-01T00:00:00"), utc("2026-05-01T01:00:30")
    plan = catchup_plan("*/5 * * * *", "UTC", seen, now, window_seconds=86400, max_runs=3)
    assert plan.due == [utc(f"2026-05-01T00:{m}:00") for m in ("50", "55")] + [utc("2026-05-01T01:00:00")]
    assert plan.skipped == 9  # 00:05 .. 00:45
    assert plan.last_skipped == utc("2026-05-01T00:45:00")


def test_catchup_plan_with_nothing_missed() -> None:
    now = utc("2026-05-01T10:30:00")
    plan = catchup_plan("0 * * * *", "UTC", utc("2026-05-01T10:00:00"), now, 3600, 10)
    assert (plan.due, plan.skipped, plan.through) == ([], 0, None)


def test_catchup_after_months_of_downtime_is_bounded() -> None:
    seen, now = utc("2026-01-01T00:00:00"), utc("2026-04-01T00:00:30")
    plan = catchup_plan("* * * * *", "UTC", seen, now, window_seconds=120, max_runs=10)
    assert plan.due == [utc("2026-03-31T23:59:00"), utc("2026-04-01T00:00:00")]  # window from 23:58:30
    assert plan.skipped == SKIPPED_COUNT_CAP
    assert plan.through == utc("2026-04-01T00:00:00")


def test_catchup_over_a_dst_gap_counts_the_transition_once() -> None:
    seen, now = utc("2026-03-08T06:50:00"), utc("2026-03-08T07:20:00")
    plan = catchup_plan("*/15 * * * *", "America/New_York", seen, now, 3600, 10)
    assert plan.due == [utc("2026-03-08T07:00:00"), utc("2026-03-08T07:15:00")]
