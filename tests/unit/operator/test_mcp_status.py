"""The MCP tools a run discovered: from its report into Execution.status.mcp, then into the Agent's
status.mcp (the newest run that reported them)."""

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
