"""A run's reported usage into Execution.status.usage: the cached parts of its input and what it would
have cost without caching are kept, bounded (the report is the pod's word)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_operator.builders.execution_status import observe, status_patch

pytestmark = pytest.mark.unit

COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    report = {"stopReason": "end_turn", "summary": "done", "usage": usage}
    job = {"spec": {}, "status": {"conditions": COMPLETE, "succeeded": 1}}
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": json.dumps(report)}}}],
        },
    }
    patch = status_patch({}, observe(job, [pod]), 1, "2026-01-01T00:02:00Z").patch()
    return dict(patch["usage"])


def test_cache_reads_writes_and_the_uncached_cost_reach_the_status() -> None:
    usage = _usage(
        {
            "inputTokens": 10_000,
            "outputTokens": 200,
            "cacheReadTokens": 8_000,
            "cacheWriteTokens": 1_500,
            "costUSD": "0.012",
            "uncachedCostUSD": "0.033",
        }
    )
    assert usage["cacheReadTokens"] == 8_000 and usage["cacheWriteTokens"] == 1_500
    assert usage["costUSD"] == "0.012" and usage["uncachedCostUSD"] == "0.033"
    assert usage["totalTokens"] == 10_200


def test_malformed_or_impossible_cache_counts_are_bounded_by_the_input() -> None:
    usage = _usage(
        {"inputTokens": 100, "cacheReadTokens": 90, "cacheWriteTokens": 50, "uncachedCostUSD": "-1"}
    )
    assert (usage["cacheReadTokens"], usage["cacheWriteTokens"]) == (90, 10)
    assert usage["uncachedCostUSD"] == "0"
    odd = _usage({"inputTokens": "lots", "cacheReadTokens": True, "outputTokens": -3})
    assert (odd["inputTokens"], odd["cacheReadTokens"], odd["outputTokens"]) == (0, 0, 0)
    assert "uncachedCostUSD" not in _usage({"inputTokens": 5})  # an older runtime's report
