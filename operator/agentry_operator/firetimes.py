"""Pure fire-time rules of a schedule: the next N times, DST, jitter and the catch-up plan.

A cron is read in wall-clock time of its IANA zone, as a person means it. croniter walks naive local
times (no DST arithmetic of its own); each wall time is then mapped to one UTC instant:

* a time skipped by a spring-forward transition (02:30 on a day clocks jump 02:00 -> 03:00) runs once,
  at the transition instant;
* a time repeated by a fall-back transition (01:30 twice) runs once, at its first occurrence;
* several wall times landing on the same instant (every 15 minutes inside a skipped hour) run once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from croniter import croniter

UTC = dt.UTC
# A fall-back transition repeats at most this much wall time (1 h almost everywhere, 30 min at
# Lord Howe); iteration starts this far back so the first run after `after` is never lost.
_REPEAT_MARGIN = dt.timedelta(hours=3)
# Counting skipped runs of an every-minute cron after months of downtime must stay cheap.
SKIPPED_COUNT_CAP = 10_000


def _expr(cron: str) -> str:
    return "0 0 * * *" if cron == "@midnight" else cron


def _exists(wall: dt.datetime, zone: ZoneInfo) -> bool:
    """False for a wall time inside a spring-forward gap."""
    there = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    return there == wall


def _gap_end(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant a spring-forward gap containing `wall` ends (the transition itself)."""
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)  # before the gap, earlier offset
    hi = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # after the gap
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > dt.timedelta(seconds=1):  # first instant whose wall time is past `wall`
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def to_utc(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """One UTC instant for a naive wall time: the transition if skipped, the first if repeated."""
    if not _exists(wall, zone):
        return _gap_end(wall, zone)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def walk_start(after: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The naive wall time croniter starts from: `after`'s own, unless the zone's UTC offset changes
    within _REPEAT_MARGIN either side (then the margin back, as always). Away from a transition wall
    and UTC time differ by one fixed offset, so every earlier wall time maps to an instant <= `after`
    and would only be dropped: an every-minute cron takes 1 croniter step per look, not 180 (each
    reconcile, refresh and status.upcomingRuns looks; measured with bench/schedule_drift.py)."""
    local = after.astimezone(zone)
    offsets = {(after + k * _REPEAT_MARGIN).astimezone(zone).utcoffset() for k in (-1, 1)}
    if offsets == {local.utcoffset()}:
        return local.replace(tzinfo=None)
    return (local - _REPEAT_MARGIN).replace(tzinfo=None)


def iter_fire_times(cron: str, tz: str, after: dt.datetime) -> Iterator[dt.datetime]:
    """Fire times (UTC, ascending, unique) strictly after `after`."""
    zone = ZoneInfo(tz)
    walls = croniter(_expr(cron), walk_start(after, zone))
    last = after
    while True:
        when = to_utc(walls.get_next(dt.datetime), zone)
        if when > last:
            last = when
            yield when


def next_fire_times(cron: str, tz: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    times = iter_fire_times(cron, tz, after)
    return [next(times) for _ in range(count)]


def jitter_seconds(key: str, max_seconds: int) -> int:
    """A stable offset in [0, max_seconds] for one Agent (key: namespace/name), spreading load."""
    if max_seconds <= 0:
        return 0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % (max_seconds + 1)


@dataclass(frozen=True)
class CatchupPlan:
    """Missed fire times between the last one seen and now."""

    due: list[dt.datetime] = field(default_factory=list)  # inside the window, oldest first
    skipped: int = 0  # outside the window (or past the cap), capped at SKIPPED_COUNT_CAP
    first_skipped: dt.datetime | None = None
    last_skipped: dt.datetime | None = None
    through: dt.datetime | None = None  # the newest fire time accounted for (the next watermark)


def catchup_plan(
    cron: str, tz: str, seen: dt.datetime, now: dt.datetime, window_seconds: int, max_runs: int
) -> CatchupPlan:
    """Which fire times in (seen, now] are due (inside `window_seconds` of now, at most `max_runs`,
    the newest ones) and which are skipped (older than the window, or beyond the cap)."""
    horizon = now - dt.timedelta(seconds=window_seconds)
    inside: list[dt.datetime] = []
    skipped, first, last, through = 0, None, None, None
    for when in iter_fire_times(cron, tz, seen):
        if when > now:
            break
        through = when
        if when >= horizon:
            inside.append(when)
            continue
        skipped += 1
        first = first or when
        last = when
        if skipped >= SKIPPED_COUNT_CAP:  # jump to the window: the rest beyond it is not counted
            for later in iter_fire_times(cron, tz, max(horizon - dt.timedelta(microseconds=1), when)):
                if later > now:
                    break
                inside.append(later)
                through = later
            break
    over = max(len(inside) - max_runs, 0)
    if over:
        first = first or inside[0]
        last = inside[over - 1]
        skipped += over
    return CatchupPlan(inside[over:], skipped, first, last, through)
