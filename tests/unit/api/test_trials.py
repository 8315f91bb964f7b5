"""The pure half of "try it": manifests, feed events → parts, tool steps from the log, the sweep."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from agentry_api.services.errors import Invalid
from agentry_api.services.trials import parts as t
from agentry_api.services.trials.run import draft_body
from agentry_common import constants as c

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def cr(name: str, phase: str | None = None, age_s: float = 0) -> dict[str, object]:
    born = (NOW - dt.timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "creationTimestamp": born},
        "status": {"phase": phase} if phase else {},
    }


def test_the_trial_runs_once_labelled_and_owned() -> None:
    spec = {"instructions": "x", "schedule": {"cron": "0 8 * * 1"}, "tools": ["http"]}
    assert t.trial_spec(spec) == {"instructions": "x", "tools": ["http"]}
    ex = t.execution_manifest("ns", "trial-ab", "go", "corr", "own", {"tp": "1"})
    assert (
        ex["metadata"]["labels"][c.LABEL_TRIAL] == "true" and ex["metadata"]["labels"][c.LABEL_OWNER] == "own"
    )
    assert ex["spec"] == {
        "agentRef": {"name": "trial-ab"},
        "trigger": "API",
        "correlationId": "corr",
        "input": "go",
    }
    assert ex["metadata"]["annotations"] == {"tp": "1", c.ANNOTATION_CORRELATION_ID: "corr"}
    agent = t.mark_trial({"metadata": {"labels": {"a": "b"}}}, "own")
    assert agent["metadata"]["labels"] == {"a": "b", c.LABEL_OWNER: "own", c.LABEL_TRIAL: "true"}
    assert t.is_trial(agent) and not t.is_trial({"metadata": {"labels": {"a": "b"}}})
    assert t.trial_name().startswith(c.TRIAL_NAME_PREFIX) and t.trial_name() != t.trial_name()


def test_feed_events_become_parts_once() -> None:
    pending = {"kind": "execution", "data": {"execution": "x", "phase": "Pending", "reason": "Accepted"}}
    (status,) = t.event_parts(pending, None)
    assert status == {"kind": "status", "phase": "Pending", "reason": "Accepted", "message": None}
    assert t.event_parts(pending, status) == []  # the same status again adds nothing
    unexplained = {"kind": "execution", "data": {"phase": "Pending", "reason": None}}
    assert t.event_parts(unexplained, status) == []  # nor the same phase without a reason
    done = {
        "kind": "execution",
        "data": {
            "phase": "Succeeded",
            "reason": "Completed",
            "result": {"summary": "ok", "stopReason": "end_turn"},
            "usage": {"inputTokens": 3, "outputTokens": 4, "costUSD": "0.01", "model": "m", "turns": 1},
        },
    }
    kinds = [p["kind"] for p in t.event_parts(done, status)]
    assert kinds == ["status", "result", "usage"]
    asked = {
        "kind": "approval",
        "data": {"action": "requested", "id": "a1", "state": "pending", "tool": "shell"},
    }
    (approval,) = t.event_parts(asked, status)
    assert (
        approval["state"] == "pending" and approval["url"] == t.APPROVALS_URL and approval["tool"] == "shell"
    )
    assert t.event_parts({"kind": "agent", "data": {}}, None) == []


def test_tool_steps_come_from_the_log_once_each() -> None:
    lines = [
        "not json",
        json.dumps({"type": "turn", "turn": 1}),
        json.dumps(
            {"type": "tool_call", "toolUseId": "u1", "tool": "shell", "arguments": "ls", "risk": "YELLOW"}
        ),
        json.dumps(
            {"type": "tool_result", "toolUseId": "u1", "tool": "shell", "isError": False, "summary": "a b"}
        ),
    ]
    seen: set[str] = set()
    parts = t.tool_parts(lines, seen)
    assert [(p["kind"], p["tool"]) for p in parts] == [("tool_call", "shell"), ("tool_result", "shell")]
    assert parts[0]["arguments"] == "ls" and parts[1]["isError"] is False
    assert t.tool_parts(lines, seen) == []


def test_the_sweep_deletes_ended_orphaned_and_old_trials() -> None:
    agents = [cr("ended", age_s=30), cr("running", age_s=30), cr("orphan", age_s=120), cr("new", age_s=5)]
    agents.append(cr("old", age_s=7200))
    executions = [cr("ended", "Succeeded"), cr("running", "Running"), cr("old", "Running")]
    assert t.to_sweep(agents, executions, NOW, dt.timedelta(hours=1)) == ["ended", "orphan", "old"]
    assert t.active(executions) == 2


def test_a_missing_or_invalid_draft_names_its_fields() -> None:
    with pytest.raises(Invalid) as missing:
        draft_body(None)
    assert missing.value.loc == ["draft"]
    with pytest.raises(Invalid) as bad:
        draft_body({"agent": {"name": "x", "spec": {"instructions": "x", "tools": ["teleport"]}}})
    assert bad.value.errors[0]["loc"][:3] == ["draft", "spec", "tools"]
