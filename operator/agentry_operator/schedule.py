"""Cron and time-zone rules: validation (what CEL cannot check) and the next run time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

# Kubernetes CronJobs accept these macros; croniter knows them too.
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


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


def next_run(expr: str, tz: str, after: dt.datetime | None = None) -> dt.datetime:
    """The next tick strictly after `after` (default now), in UTC."""
    zone = ZoneInfo(tz)
    start = (after or dt.datetime.now(dt.UTC)).astimezone(zone)
    expr = "0 0 * * *" if expr == "@midnight" else expr
    nxt: dt.datetime = croniter(expr, start).get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
