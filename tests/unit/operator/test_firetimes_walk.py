"""Where the fire-time walk starts: at `after` away from DST transitions (1 croniter step per look for
an every-minute cron, not 180), 3 h back near one, and the same fire times as always walking 3 h back."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from agentry_operator.firetimes import next_fire_times, to_utc, walk_start

pytestmark = pytest.mark.unit
UTC = dt.UTC
MARGIN = dt.timedelta(hours=3)
ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Asia/Seoul", "Australia/Lord_Howe", "Asia/Kolkata"]
CRONS = ["* * * * *", "*/7 * * * *", "30 2 * * *", "30 1 * * *", "0,15,30,45 0-3 * * *", "5 7 * * 1-5"]
# Transition days of 2026: New York, Berlin (spring and fall), Lord Howe (30-minute shifts).
TRANSITION_DAYS = ["2026-03-08", "2026-11-01", "2026-03-29", "2026-10-25", "2026-04-04", "2026-10-03"]


def reference(cron: str, tz: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The walk as it was: always from 3 h of wall time before `after`."""
    zone = ZoneInfo(tz)
    walls = croniter(cron, (after.astimezone(zone) - MARGIN).replace(tzinfo=None))

    def times() -> Iterator[dt.datetime]:
        last = after
        while True:
            when = to_utc(walls.get_next(dt.datetime), zone)
            if when > last:
                last = when
                yield when

    found = times()
    return [next(found) for _ in range(count)]


def instants() -> list[dt.datetime]:
    """Every 10 minutes (and odd seconds) across each transition day, and random ones in 2026."""
    rng = random.Random(15)
    near = [
        dt.datetime.fromisoformat(day).replace(tzinfo=UTC) + dt.timedelta(minutes=10 * k, seconds=k % 7)
        for day in TRANSITION_DAYS
        for k in range(-12, 6 * 30)
    ]
    year = dt.datetime(2026, 1, 1, tzinfo=UTC)
    anywhere = [year + dt.timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(300)]
    return near + anywhere


@pytest.mark.parametrize("tz", ZONES)
def test_same_fire_times_as_walking_from_three_hours_back(tz: str) -> None:
    for cron in CRONS:
        for after in instants()[::5]:
            assert next_fire_times(cron, tz, after, 3) == reference(cron, tz, after, 3), (cron, after)


def test_walk_starts_at_after_away_from_transitions() -> None:
    after = dt.datetime(2026, 6, 1, 12, 34, 56, tzinfo=UTC)
    assert walk_start(after, ZoneInfo("UTC")) == dt.datetime(2026, 6, 1, 12, 34, 56)
    assert walk_start(after, ZoneInfo("Europe/Berlin")) == dt.datetime(2026, 6, 1, 14, 34, 56)


def test_walk_starts_three_hours_back_near_a_transition() -> None:
    # Berlin falls back at 2026-10-25 01:00 UTC; one hour before it, and one hour after it.
    zone = ZoneInfo("Europe/Berlin")
    before = dt.datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST
    after = dt.datetime(2026, 10, 25, 2, 0, tzinfo=UTC)  # 03:00 CET
    assert walk_start(before, zone) == dt.datetime(2026, 10, 24, 23, 0)
    assert walk_start(after, zone) == dt.datetime(2026, 10, 25, 0, 0)
