"""The integration tier's own rule: no test runs across midnight UTC, where day-window budgets reset."""

from __future__ import annotations

import datetime as dt
import time

import pytest

# Day windows (budgets, quotas) reset at midnight UTC: a test that counts against one and then reads
# the decision is not run in the last MIDNIGHT_MARGIN seconds of a day. An admission asked to wait up
# to a minute rightly answers `wait` there, not `refuse` (a full run met it in its last minute).
MIDNIGHT_MARGIN = 120.0


def seconds_to_midnight(now: dt.datetime) -> float:
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


@pytest.fixture(autouse=True)
def clear_of_midnight() -> None:
    left = seconds_to_midnight(dt.datetime.now(dt.UTC))
    if left < MIDNIGHT_MARGIN:
        time.sleep(left + 1)
