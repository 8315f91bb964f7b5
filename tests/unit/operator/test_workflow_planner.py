"""The next-step planner, step naming and the run's status (workflows/planner.py, step.py, status.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from agentry_common import workflows as w
from agentry_common.models import Phase
from agentry_operator.workflows import planner
from agentry_operator.workflows.planner import Plan, backoff_seconds
from agentry_operator.workflows.status import build_status
from agentry_operator.workflows.step import (
    Attempt,
    attempts_from,
    build_execution,
    execution_name,
    step_fields,
)

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 1, 5, 7, 30, tzinfo=dt.UTC)


def step(name: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "agentRef": {"name": "worker"}, "dependsOn": list(deps), **extra}


def done(name: str, phase: Phase = Phase.SUCCEEDED, number: int = 1, at: int = 10, **kw: Any) -> Attempt:
    return Attempt(
        step=name,
        number=number,
        name=f"r-{name}-{number}",
        phase=phase,
        created=T0 + dt.timedelta(seconds=at - 5),
        completed=T0 + dt.timedelta(seconds=at) if phase.terminal else None,
        **kw,
    )


def run(spec: dict[str, Any], *attempts: Attempt, now: int = 20) -> Plan:
    by_step: dict[str, list[Attempt]] = {}
    for a in attempts:
        by_step.setdefault(a.step, []).append(a)
    return planner.plan(spec, T0, by_step, T0 + dt.timedelta(seconds=now))


def phases(p: Plan) -> dict[str, str]:
    return {n: v.phase.value for n, v in p.steps.items()}


DIAMOND = {"steps": [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")], "parallelism": 2}


def test_diamond_starts_the_root_then_both_branches_then_the_join() -> None:
    assert run(DIAMOND).starts == [("a", 1)]
    p = run(DIAMOND, done("a"))
    assert p.starts == [("b", 1), ("c", 1)] and p.phase == w.RunPhase.RUNNING
    p = run(DIAMOND, done("a"), done("b"), done("c", Phase.RUNNING))
    assert p.starts == [] and phases(p)["d"] == "Pending"
    p = run(DIAMOND, done("a"), done("b"), done("c"))
    assert p.starts == [("d", 1)]
    p = run(DIAMOND, done("a"), done("b"), done("c"), done("d"))
    assert p.phase == w.RunPhase.SUCCEEDED and p.reason == w.RunReason.ALL_SUCCEEDED and p.wake is None


def test_parallelism_caps_starts_by_priority_and_approvals_take_no_slot() -> None:
    spec = {"steps": [step("x"), step("y", priority=3), step("z", priority=3), step("q")], "parallelism": 2}
    assert run(spec).starts == [("y", 1), ("z", 1)]
    assert run(spec, done("y", Phase.RUNNING)).starts == [("z", 1)]
    # y waits for a human: it holds no slot, so two others start.
    assert run(spec, done("y", Phase.WAITING_APPROVAL)).starts == [("z", 1), ("x", 1)]
    assert phases(run(spec, done("y", Phase.WAITING_APPROVAL)))["y"] == "WaitingApproval"


def test_an_approval_wait_holds_only_its_dependents() -> None:
    spec = {"steps": [step("a"), step("post", "a"), step("other")]}
    p = run(spec, done("a", Phase.WAITING_APPROVAL))
    assert p.starts == [("other", 1)] and phases(p)["post"] == "Pending"


@pytest.mark.parametrize(
    ("policy", "d_phase", "d_starts"),
    [("FailFast", "Skipped", False), ("ContinueIndependent", "Running", True)],
)
def test_failure_policies(policy: str, d_phase: str, d_starts: bool) -> None:
    spec = {
        "failurePolicy": policy,
        "steps": [step("a"), step("b"), step("c", "a"), step("d", "b"), step("fin", "c", "d", when="Always")],
    }
    p = run(spec, done("a", Phase.FAILED), done("b"))
    assert phases(p)["c"] == "Skipped" and phases(p)["d"] == d_phase
    assert (("d", 1) in p.starts) is d_starts
    end = run(spec, done("a", Phase.FAILED), done("b"), *([done("d")] if d_starts else []))
    assert end.starts == [("fin", 1)]  # Always runs even after FailFast stopped the rest
    final = run(spec, done("a", Phase.FAILED), done("b"), done("fin"), *([done("d")] if d_starts else []))
    assert (
        final.phase == w.RunPhase.FAILED and final.reason == w.RunReason.STEP_FAILED and "a" in final.message
    )


@pytest.mark.parametrize(
    ("when", "dep", "runs"),
    [
        ("Succeeded", Phase.FAILED, False),
        ("Failed", Phase.FAILED, True),
        ("Failed", Phase.SUCCEEDED, False),
        ("Completed", Phase.FAILED, True),
        ("Always", Phase.FAILED, True),
    ],
)
def test_when_conditions(when: str, dep: Phase, runs: bool) -> None:
    spec = {"failurePolicy": "ContinueIndependent", "steps": [step("a"), step("b", "a", when=when)]}
    p = run(spec, done("a", dep))
    assert (p.starts == [("b", 1)]) is runs
    assert phases(p)["b"] == ("Running" if runs else "Skipped")


def test_completed_does_not_run_after_a_skipped_dependency() -> None:
    spec = {
        "failurePolicy": "ContinueIndependent",
        "steps": [step("a"), step("b", "a"), step("c", "b", when="Completed"), step("e", "b", when="Always")],
    }
    p = run(spec, done("a", Phase.FAILED))
    assert phases(p)["b"] == "Skipped" and phases(p)["c"] == "Skipped" and p.starts == [("e", 1)]


def test_retries_wait_an_exponential_backoff() -> None:
    retries = {"limit": 3, "backoffSeconds": 5, "factor": 3, "maxBackoffSeconds": 30}
    assert [backoff_seconds(retries, n) for n in (1, 2, 3, 4)] == [5, 15, 30, 30]
    spec = {"steps": [step("a", retries=retries)]}
    first = done("a", Phase.FAILED, at=10)
    p = run(spec, first, now=14)
    assert p.starts == [] and phases(p)["a"] == "Backoff"
    assert p.steps["a"].next_attempt == p.wake == T0 + dt.timedelta(seconds=15)
    assert run(spec, first, now=15).starts == [("a", 2)]
    second = done("a", Phase.FAILED, number=2, at=40)
    assert run(spec, first, second, now=54).starts == [] and run(spec, first, second, now=55).starts == [
        ("a", 3)
    ]


def test_a_step_fails_for_good_when_its_retries_are_spent() -> None:
    spec = {"steps": [step("a", retries={"limit": 1, "backoffSeconds": 1})]}
    p = run(spec, done("a", Phase.FAILED), done("a", Phase.FAILED, number=2, at=15), now=100)
    assert phases(p)["a"] == "Failed" and p.phase == w.RunPhase.FAILED and p.starts == []


def test_deadlines_cancel_late_attempts_and_end_the_run() -> None:
    spec = {"steps": [step("a", deadlineSeconds=30), step("b")]}
    running = done("a", Phase.RUNNING, at=10)  # created at T0+5 s
    p = run(spec, running, done("b", Phase.RUNNING), now=20)
    assert p.cancels == [] and p.wake == T0 + dt.timedelta(seconds=35)
    assert run(spec, running, now=35).cancels == ["r-a-1"]
    late: dict[str, Any] = {"steps": [step("a"), step("b", "a")], "deadlineSeconds": 60}
    p = run(late, done("a", Phase.RUNNING), now=61)
    assert p.cancels == ["r-a-1"] and p.phase == w.RunPhase.FAILED
    assert p.reason == w.RunReason.DEADLINE_EXCEEDED and phases(p) == {"a": "Failed", "b": "Skipped"}


def test_recorded_ended_steps_are_final_even_if_their_executions_were_pruned() -> None:
    recorded = {
        "steps": [{"name": "a", "phase": "Succeeded", "attempts": 1}, {"name": "b", "phase": "Running"}]
    }
    ended = planner.ended_steps(w.WorkflowRunStatus.model_validate(recorded).steps)
    assert set(ended) == {"a"}
    p = planner.plan(DIAMOND, T0, {}, T0, ended)
    assert ("a", 1) not in p.starts and p.starts == [("b", 1), ("c", 1)]


def test_execution_names_are_deterministic_and_fit_a_label() -> None:
    assert execution_name("r1", "fetch", 2) == "r1-fetch-2"
    long_run, long_step = "r" * 40, "s" * 40
    a, b = execution_name(long_run, long_step, 1), execution_name(long_run, long_step + "x", 1)
    assert len(a) <= 63 and a.endswith("-1") and a != b and a == execution_name(long_run, long_step, 1)


RUN = {
    "metadata": {"name": "r1", "namespace": "ns", "uid": "u-1"},
    "spec": {"workflowRef": {"name": "wf"}},
}


def test_step_executions_carry_labels_owner_and_input() -> None:
    ex = build_execution(RUN, step("a", priority=4), 2, "x" * 70000)
    assert ex["metadata"]["name"] == "r1-a-2"
    assert ex["metadata"]["labels"] == {
        w.LABEL_WORKFLOW: "wf",
        w.LABEL_WORKFLOW_RUN: "r1",
        w.LABEL_WORKFLOW_STEP: "a",
        w.LABEL_WORKFLOW_ATTEMPT: "2",
    }
    owner = ex["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "WorkflowRun" and owner["uid"] == "u-1" and owner["controller"] is True
    assert ex["spec"]["priority"] == 4 and len(ex["spec"]["input"]) == 65536
    # Read back: only the Executions of this run's uid count as its attempts.
    ex["metadata"]["creationTimestamp"] = "2026-01-05T07:30:00Z"
    ex["status"] = {"phase": "Failed", "usage": {"totalTokens": 7, "costUSD": "0.5"}}
    other = {**ex, "metadata": {**ex["metadata"], "ownerReferences": [{"uid": "u-0"}]}}
    (attempt,) = attempts_from([ex, other], "u-1")["a"]
    assert attempt.number == 2 and attempt.phase == Phase.FAILED and attempt.cost == Decimal("0.5")


def test_a_step_asks_its_execution_for_its_outputs_and_templates_read_the_latest_attempts() -> None:
    ex = build_execution(RUN, step("a", outputs=["headline"]), 1, "go")
    assert ex["spec"]["outputs"] == ["headline"]
    assert "outputs" not in build_execution(RUN, step("b"), 1, "go")["spec"]
    ex["metadata"]["creationTimestamp"] = "2026-01-05T07:30:00Z"
    ex["status"] = {"phase": "Succeeded", "result": {"summary": "S", "outputs": {"headline": "H"}}}
    attempts = attempts_from([ex], "u-1")["a"]
    assert step_fields("Succeeded", attempts) == {
        "phase": "Succeeded",
        "summary": "S",
        "outputs.headline": "H",
    }
    assert step_fields("Skipped", None) == {"phase": "Skipped", "summary": ""}


def test_status_sums_every_attempt_and_reports_progress() -> None:
    spec = {"steps": [step("a", retries={"limit": 1}), step("b", "a")]}
    attempts = {
        "a": [
            done("a", Phase.FAILED, tokens=5, cost=Decimal("0.25")),
            done("a", number=2, at=30, tokens=7, cost=Decimal("0.5"), summary="ok"),
        ]
    }
    p = planner.plan(spec, T0, attempts, T0 + dt.timedelta(seconds=40))
    first = build_status(p, attempts, w.WorkflowRunStatus(), 3, T0 + dt.timedelta(seconds=40))
    status = first.patch()
    assert status["progress"] == "1/2" and status["phase"] == "Running" and status["workflowGeneration"] == 3
    a, b = status["steps"]
    assert a["attempts"] == 2 and a["tokens"] == 12 and a["costUSD"] == "0.75" and a["execution"] == "r-a-2"
    assert b["phase"] == "Running" and b["attempts"] == 1  # starting now
    assert status["totals"] == {"tokens": 12, "costUSD": "0.75"}
    assert status["conditions"][0]["status"] == "Unknown"
    previous = w.WorkflowRunStatus.model_validate(status)  # as read back from the API server
    again = build_status(p, attempts, previous, 3, T0 + dt.timedelta(seconds=90)).patch()
    assert again["conditions"] == status["conditions"] and again["startTime"] == status["startTime"]
