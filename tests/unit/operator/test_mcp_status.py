"""A run's report into its status: the MCP tools it discovered into Execution.status.mcp, then into
the Agent's status.mcp (the newest run that reported them); its usage, with the cached parts of its
input and what it would have cost without caching, into Execution.status.usage, bounded (the report
is the pod's word)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_common.models import Archived, McpStatus, Phase
from agentry_operator.builders.agent_status import summarize
from agentry_operator.builders.execution_status import MCP_TOOLS, mcp_status, observe, status_patch

pytestmark = pytest.mark.unit

COMPLETE = [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]
REPORT: dict[str, Any] = {
    "stopReason": "end_turn",
    "summary": "done",
    "usage": {"inputTokens": 1, "outputTokens": 1, "costUSD": "0"},
    "mcp": [
        {"name": "everything", "tools": {"echo": "GREEN", "get-sum": "YELLOW"}},
        {"name": "gh", "error": "ConnectError: refused"},
    ],
}


def _succeeded(report: dict[str, Any]) -> Any:
    job = {"spec": {}, "status": {"conditions": COMPLETE, "succeeded": 1}}
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": json.dumps(report)}}}],
        },
    }
    return observe(job, [pod])


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    seen = _succeeded({"stopReason": "end_turn", "summary": "done", "usage": usage})
    return dict(status_patch({}, seen, 1, "2026-01-01T00:02:00Z").patch()["usage"])


def test_the_report_becomes_execution_status_mcp() -> None:
    seen = _succeeded(REPORT)
    assert seen.phase is Phase.SUCCEEDED
    patch = status_patch({}, seen, 1, "2026-01-01T00:02:00Z").patch()
    assert patch["mcp"] == {"servers": REPORT["mcp"]}
    McpStatus.model_validate(patch["mcp"])  # the shape of the CR's status
    assert "mcp" not in status_patch({}, _succeeded({**REPORT, "mcp": []}), 1, "now").patch()


def test_a_malformed_or_oversized_report_is_bounded() -> None:
    tools = {f"t{i}": "GREEN" for i in range(MCP_TOOLS + 10)}
    report = {
        "mcp": [
            {"name": "a", "tools": {**tools, "bad": "PURPLE"}, "error": "x" * 1000},
            "not an entry",
            {"tools": {"nameless": "RED"}},
        ]
    }
    found = mcp_status(report)
    assert found is not None
    (server,) = found.servers
    assert len(server.tools) == MCP_TOOLS and "bad" not in server.tools
    assert server.error is not None and len(server.error) == 300
    assert mcp_status({"mcp": "nope"}) is None and mcp_status({}) is None


def _execution(name: str, created: str, mcp: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Succeeded"}
    if mcp is not None:
        status["mcp"] = mcp
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {}, "status": status}


def test_the_agent_shows_what_its_newest_reporting_run_found() -> None:
    old = _execution(
        "run-1", "2026-01-01T00:00:00Z", {"servers": [{"name": "everything", "tools": {"echo": "GREEN"}}]}
    )
    new = _execution(
        "run-2", "2026-01-02T00:00:00Z", {"servers": [{"name": "everything", "error": "timeout"}]}
    )
    pending = _execution("run-3", "2026-01-03T00:00:00Z", None)  # not connected yet: says nothing
    status = summarize([old, new, pending], Archived()).patch()
    assert status["mcp"] == {"execution": "run-2", "servers": [{"name": "everything", "error": "timeout"}]}
    McpStatus.model_validate(status["mcp"])
    assert "mcp" not in summarize([pending], Archived()).patch()


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
