"""Usage aggregation (`services.usage.aggregate`), its charts and a run's usage view: cached against
uncached input and the saving from prompt caching, with runs that never reported them.

The window query itself runs on the Firestore emulator: tests/integration/api/test_usage_firestore.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentry_api.services.usage import aggregate, run_saving
from agentry_api.services.usage_charts import input_over_time, usage_charts
from agentry_api.services.views import execution_out

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 5, 10, 12, 30, tzinfo=dt.UTC)


def run(agent: str, created: str, usage: dict[str, Any] | None, phase: str = "Succeeded") -> dict[str, Any]:
    return {"agentId": agent, "phase": phase, "createdAt": created, "usage": usage}


CACHED = {  # 10k input: 8k read from the cache, 1k written, 1k uncached
    "inputTokens": 10_000,
    "outputTokens": 500,
    "cacheReadTokens": 8_000,
    "cacheWriteTokens": 1_000,
    "costUSD": "0.02",
    "uncachedCostUSD": "0.05",
    "model": "claude-sonnet-4-6",
}
OLD = {"inputTokens": 3_000, "outputTokens": 100, "costUSD": "0.03", "model": "claude-sonnet-4-6"}
WRITES_ONLY = {  # a cache written and never read: caching cost more than it saved
    "inputTokens": 2_000,
    "outputTokens": 10,
    "cacheWriteTokens": 2_000,
    "costUSD": "0.0125",
    "uncachedCostUSD": "0.01",
    "model": "claude-haiku-4-5",
}


def test_input_splits_into_cache_reads_writes_and_uncached_and_the_saving_is_summed() -> None:
    out = aggregate(
        [
            run("a", "2026-05-10T11:10:00Z", CACHED),
            run("a", "2026-05-10T12:05:00Z", OLD, "Failed"),
            run("b", "2026-05-10T12:10:00Z", WRITES_ONLY),
        ],
        "24h",
        NOW,
    )
    assert (out.inputTokens, out.cacheReadTokens, out.cacheWriteTokens) == (15_000, 8_000, 3_000)
    assert out.uncachedInputTokens == 1_000 + 3_000  # the old run's input counts as uncached
    assert out.costUSD == "0.0625"
    # The old run counts at its cost (no saving); the writes-only run at its own uncached cost.
    assert out.uncachedCostUSD == "0.09" and out.savingUSD == "0.0275"
    assert out.savingPercent == pytest.approx(30.6)
    a, b = out.agents
    assert (a.agentId, a.succeeded, a.failed, a.savingUSD) == ("a", 1, 1, "0.03")
    assert a.uncachedInputTokens == 4_000 and a.savingPercent == pytest.approx(37.5)
    assert (b.agentId, b.savingUSD, b.savingPercent) == ("b", "-0.0025", -25.0)
    assert [(m.model, m.cacheReadTokens, m.savingUSD) for m in out.models] == [
        ("claude-sonnet-4-6", 8_000, "0.03"),
        ("claude-haiku-4-5", 0, "-0.0025"),
    ]
    hour11, hour12 = out.buckets[-2:]
    assert (hour11.start, hour11.cacheReadTokens, hour11.savingUSD) == (
        "2026-05-10T11:00:00.000000Z",
        8_000,
        "0.03",
    )
    assert (hour12.cacheWriteTokens, hour12.uncachedInputTokens, hour12.savingUSD) == (
        2_000,
        3_000,
        "-0.0025",
    )


def test_runs_without_the_cache_fields_or_any_usage_save_nothing() -> None:
    out = aggregate(
        [
            run("a", "2026-05-09T00:00:00Z", OLD),
            run("b", "2026-05-09T01:00:00Z", None, "Running"),
            run(
                "c", "2026-05-09T02:00:00Z", {"costUSD": "bad", "inputTokens": "x", "uncachedCostUSD": "nan?"}
            ),
        ],
        "7d",
        NOW,
    )
    assert out.executions == 3 and out.inputTokens == 3_000 and out.uncachedInputTokens == 3_000
    assert (out.cacheReadTokens, out.cacheWriteTokens) == (0, 0)
    assert out.costUSD == out.uncachedCostUSD == "0.03"
    assert out.savingUSD == "0" and out.savingPercent == 0.0
    assert len(out.buckets) == 8 and all(b.savingPercent == 0.0 for b in out.buckets)
    empty = aggregate([], "30d", NOW)
    assert empty.uncachedCostUSD == "0" and empty.savingPercent == 0.0 and len(empty.buckets) == 31


def test_a_runs_saving_is_known_only_when_it_reported_its_uncached_cost() -> None:
    assert str(run_saving(CACHED)) == "0.03"
    assert (
        run_saving(OLD) is None and run_saving(None) is None and run_saving({"uncachedCostUSD": "x"}) is None
    )
    doc = {"id": "r", "agentId": "a", "createdAt": "", "usage": CACHED}
    usage = execution_out(doc).usage
    assert usage is not None and usage["savingUSD"] == "0.03" and usage["cacheReadTokens"] == 8_000
    old = execution_out({**doc, "usage": OLD}).usage
    assert old is not None and "savingUSD" not in old
    assert execution_out({**doc, "usage": None}).usage is None


def test_the_input_chart_stacks_reads_writes_and_uncached_with_the_saving_on_its_own_axis() -> None:
    out = aggregate(
        [run("a", "2026-05-10T11:10:00Z", CACHED), run("b", "2026-05-10T12:10:00Z", WRITES_ONLY)], "24h", NOW
    )
    spec = input_over_time(out)
    sets = {d["label"]: d for d in spec["data"]["datasets"]}
    assert list(sets) == ["cache reads", "cache writes", "uncached input", "saving (USD)"]
    assert sets["cache reads"]["data"][-2:] == [8_000.0, 0.0]
    assert sets["cache writes"]["data"][-2:] == [1_000.0, 2_000.0]
    assert sets["uncached input"]["data"][-2:] == [1_000.0, 0.0]
    assert sets["saving (USD)"]["data"][-2:] == [0.03, -0.0025] and sets["saving (USD)"]["yAxisID"] == "usd"
    assert all(d["yAxisID"] == "y" for name, d in sets.items() if name != "saving (USD)")
    assert spec["options"]["scales"]["y"]["stacked"] and "usd" in spec["options"]["scales"]
    assert spec["data"]["labels"][-1] == "05-10 12:00"
    assert set(usage_charts(out)) == {"time", "input", "agents", "models"}
