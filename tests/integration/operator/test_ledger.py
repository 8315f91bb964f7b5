"""The run ledger's pure rules (no server): a run never ends Succeeded without its pod's report or a
reason saying it is unknown, the report is the succeeded pod's, and a late event never revives an
ended run in the operator's cache. The crash test (test_crash.py) checks the same end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_operator.builders.execution_status import observe, terminal_job
from agentry_operator.handlers.state import State

pytestmark = pytest.mark.integration

COMPLETE = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}


def job(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "run-1", "namespace": "ns"},
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"startTime": "2026-01-01T00:00:00Z", "conditions": list(conditions), "succeeded": 1},
    }


def pod(name: str, phase: str, code: int, message: str | None) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": code}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": terminated}}]},
    }


REPORT = json.dumps({"summary": "ok", "usage": {"inputTokens": 3, "outputTokens": 4, "costUSD": "0.5"}})


def test_a_succeeded_job_is_written_with_its_pods_report() -> None:
    seen = observe(job(COMPLETE), [pod("p", "Succeeded", 0, REPORT)])
    assert (seen.phase.value, seen.reason) == ("Succeeded", "Completed")
    assert seen.usage is not None and seen.result is not None
    assert seen.usage.patch() == {
        "inputTokens": 3,
        "outputTokens": 4,
        "totalTokens": 7,
        "cacheReadTokens": 0,
        "cacheWriteTokens": 0,
        "costUSD": "0.5",
    }
    assert seen.result.patch() == {"summary": "ok", "truncated": False}


@pytest.mark.parametrize(
    ("pods", "why"),
    [
        ([], "its pod is gone"),
        ([pod("p", "Succeeded", 0, None)], "no termination message"),
        ([pod("p", "Succeeded", 0, "plain text")], "not the runtime's report"),
    ],
)
def test_a_succeeded_job_without_a_readable_report_says_so(pods: list[dict[str, Any]], why: str) -> None:
    seen = observe(job(COMPLETE), pods)
    assert (seen.phase.value, seen.reason) == ("Succeeded", "NoReport")
    assert why in seen.message and "usage unknown" in seen.message
    assert seen.usage is None and seen.result is None


def test_the_report_is_the_succeeded_pods_even_beside_a_failed_attempt_of_the_same_second() -> None:
    failed = pod("b-failed", "Failed", 1, json.dumps({"summary": "boom"}))
    seen = observe(job(COMPLETE), [pod("a-ok", "Succeeded", 0, REPORT), failed])
    assert seen.reason == "Completed" and seen.usage is not None and seen.usage.input_tokens == 3


def test_an_ended_job_is_told_apart() -> None:
    assert terminal_job(job(COMPLETE))
    assert not terminal_job(job())
    assert terminal_job(job({"type": "Failed", "status": "True"}))


def test_a_late_event_from_before_the_end_does_not_revive_the_run_in_the_cache() -> None:
    state = State()
    body = {
        "metadata": {"namespace": "ns", "name": "x", "uid": "u"},
        "spec": {"agentRef": {"name": "a"}},
        "status": {"phase": "Running", "jobName": "run-x"},
    }
    state.seen_execution(body)
    state.wrote_status(("ns", "x"), {"phase": "Succeeded", "usage": {"inputTokens": 1}})
    state.seen_execution(body)  # the watch's event of the earlier Running write, arriving late
    assert state.executions[("ns", "x")]["status"]["phase"] == "Succeeded"
    assert state.executions[("ns", "x")]["status"]["usage"] == {"inputTokens": 1}
    state.seen_execution({**body, "status": {"phase": "Succeeded", "usage": {"inputTokens": 1}, "x": 1}})
    assert state.executions[("ns", "x")]["status"]["x"] == 1  # a later end is taken as it is
