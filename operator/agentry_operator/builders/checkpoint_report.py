"""status.checkpoint from the runtime's report (its termination message's `checkpoint` block). Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from agentry_common.checkpoints import MAX_RUN_ENTRIES
from agentry_common.models import CheckpointStatus


def reported_count(value: object) -> int:
    """A count the pod reported (its word: anything but a non-negative integer is 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _count(value: object) -> int:
    return min(reported_count(value), MAX_RUN_ENTRIES)


def _timestamp(value: object) -> str | None:
    """An RFC 3339 time in UTC (the CRD's date-time format), or None for anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checkpoint_status(report: Mapping[str, object]) -> CheckpointStatus | None:
    """`checkpoint` ({entries, resumes, interruptedCalls, lastAt}) as status.checkpoint; None when the
    report has none (a run without a journal)."""
    block = report.get("checkpoint")
    if not isinstance(block, dict):
        return None
    return CheckpointStatus(
        entries=_count(block.get("entries")),
        resumes=_count(block.get("resumes")),
        interrupted_calls=_count(block.get("interruptedCalls")),
        last_at=_timestamp(block.get("lastAt")),
    )
