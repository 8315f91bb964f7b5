"""Adoption of an Agent's Executions: what is patched, and when it waits for starts to be quiet."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentry_operator.handlers.adoption import (
    ADOPT_BATCH,
    ADOPT_OLDEST_SECONDS,
    ADOPT_QUIET_SECONDS,
    adopt_patch,
    agent_owner,
    due,
)
from agentry_operator.tick import build_execution

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
AGENT = {"metadata": {"name": "news", "namespace": "ns", "uid": "agent-uid"}}


def execution(name: str, age: float = 0.0, **meta: Any) -> dict[str, Any]:
    created = (NOW - dt.timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, **meta},
        "spec": {"agentRef": {"name": "news"}},
    }


def test_the_owner_reference_names_the_agent_and_is_not_its_controller() -> None:
    owner = agent_owner(AGENT)  # a cached Agent may lack apiVersion and kind: they are ours
    assert owner["kind"] == "Agent" and owner["apiVersion"] == "agentry.dev/v1alpha1"
    assert owner["uid"] == "agent-uid" and owner["controller"] is False


def test_patch_adds_label_and_owner_beside_other_owners() -> None:
    run_owner = {"apiVersion": "agentry.dev/v1alpha1", "kind": "WorkflowRun", "name": "r", "uid": "r-uid"}
    patch = adopt_patch(execution("a", ownerReferences=[run_owner]), AGENT)
    assert patch is not None
    assert patch["metadata"]["labels"] == {"agentry.dev/agent": "news"}
    assert [o["uid"] for o in patch["metadata"]["ownerReferences"]] == ["r-uid", "agent-uid"]


def test_an_execution_made_with_its_owner_needs_no_patch() -> None:
    made = build_execution("news", "ns", NOW, agent_owner(AGENT))
    assert adopt_patch(made, AGENT) is None
    assert adopt_patch(build_execution("news", "ns", NOW), AGENT) is not None  # the tick pod's


def test_adoption_waits_while_runs_start() -> None:
    runs = [execution("a"), execution("b", age=5)]
    assert due(runs, AGENT, quiet_for=0.1, now=NOW) == ([], True)


def test_adoption_goes_once_starts_are_quiet() -> None:
    runs = [execution("a"), execution("b", age=5)]
    patches, waiting = due(runs, AGENT, quiet_for=ADOPT_QUIET_SECONDS, now=NOW)
    assert [name for name, _ in patches] == ["b", "a"] and not waiting  # oldest first


def test_a_steady_stream_of_starts_never_starves_adoption() -> None:
    runs = [execution("young"), execution("old", age=ADOPT_OLDEST_SECONDS)]
    patches, waiting = due(runs, AGENT, quiet_for=0.0, now=NOW)
    assert [name for name, _ in patches] == ["old", "young"] and not waiting  # all due ones at once


def test_adopted_or_deleting_executions_are_left_alone() -> None:
    adopted = build_execution("news", "ns", NOW, agent_owner(AGENT))
    adopted["metadata"]["creationTimestamp"] = "2026-11-25T11:00:00Z"
    deleting = execution("b", age=60, deletionTimestamp="2026-11-25T12:00:00Z")
    assert due([adopted, deleting], AGENT, quiet_for=0.0, now=NOW) == ([], False)


def test_a_large_backlog_is_adopted_in_batches_oldest_first() -> None:
    runs = [execution(f"r{i:04d}", age=ADOPT_OLDEST_SECONDS + i) for i in range(ADOPT_BATCH + 5)]
    patches, waiting = due(runs, AGENT, quiet_for=ADOPT_QUIET_SECONDS, now=NOW)
    assert len(patches) == ADOPT_BATCH and waiting  # the rest at the Agent's next refresh
    assert patches[0][0] == f"r{ADOPT_BATCH + 4:04d}"  # the oldest first
