"""Issue 18, the operator's parts: the run token's model chain, and which deleted Executions still
hold a live run token (handlers/admission.execution_deleted ends those at the gateway)."""

from __future__ import annotations

import pytest

from agentry_common.models import AgentSpec
from agentry_operator.builders.governance import deleted_with_live_token, model_chain

pytestmark = pytest.mark.unit


def spec(**fields: object) -> AgentSpec:
    return AgentSpec.model_validate({"instructions": "x", **fields})


def test_the_model_chain_is_the_model_then_its_fallbacks() -> None:
    chained = spec(
        model={
            "name": "claude-sonnet-4-6",
            "fallbacks": [{"provider": "openai", "name": "gpt-4.1"}, {"name": "claude-sonnet-4-6"}],
        }
    )
    assert model_chain(chained) == ("claude-sonnet-4-6", "gpt-4.1")
    assert model_chain(spec()) == ()  # no model (and no default): the token names none
    # The Claude Code CLI picks a small model of its own for background work: no chain.
    assert model_chain(spec(model={"name": "claude-sonnet-4-6"}, runtime="claude-code")) == ()


@pytest.mark.parametrize(
    ("status", "live"),
    [
        ({"phase": "Running", "jobName": "j"}, True),
        ({"phase": "Pending", "jobName": "j"}, True),
        ({"phase": "WaitingApproval", "jobName": "j"}, True),
        ({"jobName": "j"}, True),
        ({"phase": "Pending"}, False),  # never started: no token
        ({"phase": "Succeeded", "jobName": "j"}, False),  # ended: the gateway was told then
        ({"phase": "Cancelled", "jobName": "j"}, False),
        ({}, False),
    ],
)
def test_a_deleted_execution_holds_a_live_token_while_its_run_had_a_job_and_had_not_ended(
    status: dict[str, str], live: bool
) -> None:
    assert deleted_with_live_token({"metadata": {"name": "e"}, "status": status}) is live
