"""The run gate's follow-up rule, the webhook's early refusal, and the timeout cap of checkpointed runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentry_common import constants as c
from agentry_common.conditions import Reason
from agentry_common.models import Phase
from agentry_common.policy import AgentPolicy, Rule, violations
from agentry_operator.builders.follow_up import follow_up_error, follow_up_held, parent_of
from agentry_operator.builders.run_gate import policy_errors
from agentry_operator.handlers.follow_up import label_value
from agentry_operator.webhook import parent_errors

pytestmark = pytest.mark.unit


def run(
    name: str,
    agent: str = "news",
    owner: str | None = "u-1",
    phase: str | None = None,
    entries: int | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "uid": f"{name}-uid", "labels": {}},
        "spec": {"agentRef": {"name": agent}},
        "status": {},
    }
    if owner is not None:
        body["metadata"]["labels"][c.LABEL_OWNER] = owner
    if phase is not None:
        body["status"]["phase"] = phase
    if entries is not None:
        body["status"]["checkpoint"] = {"entries": entries}
    if parent is not None:
        body["spec"]["parentRef"] = {"name": parent}
    return body


CHILD = run("run-2", parent="run-1")
PARENT = run("run-1", phase="Succeeded", entries=9)


def test_a_follow_up_of_a_finished_run_with_a_journal_is_let_through() -> None:
    for phase in ("Succeeded", "Failed", "Cancelled"):
        parent = {**PARENT, "status": {"phase": phase, "checkpoint": {"entries": 3}}}
        assert follow_up_error(CHILD, parent, governed=True) == ""
    # Both without an owner label count as the same owner.
    assert (
        follow_up_error(
            run("b", owner=None, parent="a"), run("a", owner=None, phase="Failed", entries=1), True
        )
        == ""
    )
    assert follow_up_held(run("plain"), None, governed=True) is None  # no parentRef: not a follow-up
    assert parent_of(PARENT).uid == "run-1-uid"


@pytest.mark.parametrize(
    ("parent", "governed", "why"),
    [
        (None, True, "no Execution of that name in namespace ns"),
        (run("run-1", agent="other", phase="Succeeded", entries=9), True, "of Agent 'other'"),
        (run("run-1", owner="u-2", phase="Succeeded", entries=9), True, "another owner"),
        (run("run-1", owner=None, phase="Succeeded", entries=9), True, "another owner"),
        (run("run-1", phase="Running", entries=9), True, "is Running"),
        (run("run-1", phase="WaitingApproval", entries=9), True, "is WaitingApproval"),
        (run("run-1", entries=9), True, "is Pending"),
        (run("run-1", phase="Succeeded"), True, "no checkpoints"),
        (run("run-1", phase="Succeeded", entries=0), True, "no checkpoints"),
        (PARENT, False, "the LLM gateway"),
    ],
)
def test_each_refusal_fails_the_child_naming_the_field(
    parent: dict[str, Any] | None, governed: bool, why: str
) -> None:
    held = follow_up_held(CHILD, parent, governed)
    assert held is not None and (held.phase, held.reason) == (Phase.FAILED, Reason.FOLLOW_UP_REFUSED)
    assert held.message.startswith("spec.parentRef.name: 'run-1'") and why in held.message


def test_a_run_cannot_continue_itself_and_the_webhook_says_so_at_once() -> None:
    itself = run("run-1", parent="run-1")
    assert "cannot continue itself" in follow_up_error(itself, PARENT, governed=True)
    assert parent_errors(itself, None, governed=True) == [follow_up_error(itself, None, True)]
    assert "LLM gateway" in parent_errors(CHILD, None, governed=False)[0]
    # What needs the parent read is the run gate's; updates are left alone (parentRef is immutable).
    assert parent_errors(CHILD, None, governed=True) == []
    assert parent_errors(itself, copy.deepcopy(itself), governed=True) == []
    assert parent_errors(run("plain"), None, governed=False) == []


def test_the_parent_label_is_a_valid_label_value() -> None:
    assert label_value("run-1") == "run-1"
    long = "a" * 62 + "-b" + "c" * 20
    assert label_value(long) == "a" * 62 and len(label_value("x" * 253)) == 63


def test_checkpointed_runs_may_run_longer_up_to_their_own_cap() -> None:
    spec = {"instructions": "x", "timeoutSeconds": 7200}
    policy = AgentPolicy(max_timeout_seconds=3600, max_checkpointed_timeout_seconds=14400)
    (plain,) = violations(spec, policy, {})
    assert plain.rule == Rule.TIMEOUT and plain.field == "spec.timeoutSeconds"
    assert violations(spec, policy, {}, checkpointed=True) == []
    (capped,) = violations({**spec, "timeoutSeconds": 20000}, policy, {}, checkpointed=True)
    assert capped.rule == Rule.CHECKPOINTED_TIMEOUT == "maxCheckpointedTimeoutSeconds"
    assert str(capped) == (
        "spec.timeoutSeconds: 20000 s is more than the 14400 s allowed "
        "(policy rule maxCheckpointedTimeoutSeconds)"
    )
    # The run gate applies the same cap at the start.
    agent = {"metadata": {"name": "news"}, "spec": spec}
    assert policy_errors({"spec": {}}, agent, policy, checkpointed=True) == []
    assert "maxTimeoutSeconds" in policy_errors({"spec": {}}, agent, policy)[0]
