"""The call pipeline's pieces that need no server: budget subjects, the two wires behind one
interface, and the `llmCalls` record."""

from __future__ import annotations

import pytest

from agentry_common.governance import RefusalType, budget_subjects
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import Claims, RunLimits
from agentry_gateway.budgets import BudgetPolicy, Calendar, Thresholds
from agentry_gateway.calls import subjects_of
from agentry_gateway.ledger import MemoryLedger
from agentry_gateway.service import WIRES
from agentry_llm import ChatResponse, Message, TextBlock, TokenUsage

pytestmark = pytest.mark.unit

# One body both protocols accept.
LIMIT = [{"window": "day", "messages": 10}]
BODY = {"model": "m", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "x"}]}


def test_run_token_subjects_follow_the_contract() -> None:
    claims = Claims(
        typ="run",
        exp=0,
        namespace="team",
        execution="ex-1",
        execution_uid="u-1",
        agent="bot",
        limits=RunLimits(tokens=100, cost_usd="0.5"),
    )
    subjects = subjects_of(claims)
    names = budget_subjects("team", "bot", "ex-1", "u-1", None)
    assert (subjects.user, subjects.agent, subjects.execution) == (names.user, names.agent, names.execution)
    assert (subjects.user, subjects.agent, subjects.execution) == ("ns:team", "team/bot", "team/ex-1/u-1")
    assert [p.name for p in subjects.run_policies] == ["run"]


def test_user_token_subjects_user_pseudo_agent_no_execution() -> None:
    """A user token (the designer's) is charged to its user, the pseudo-agent of its purpose in its
    namespace, the namespace and the installation; never to an Execution. The pseudo-agent, shared by
    every user, is counted only while a budget applies to it (like the namespace and installation)."""
    claims = Claims(typ="user", exp=0, namespace="agentry", user="1f3a", purpose="designer")
    subjects = subjects_of(claims)
    assert (subjects.user, subjects.agent, subjects.execution) == ("1f3a", "agentry/agentry:designer", "")
    assert subjects.run_policies == ()
    assert [s.value for s, _ in subjects.scopes()] == ["user", "agent", "namespace", "installation"]
    policies = [BudgetPolicy.model_validate({"name": "users", "scope": "user", "limits": LIMIT})]
    ledger = MemoryLedger(policies, Calendar("UTC"), Thresholds(), 86400)
    assert ledger.ids(subjects) == ["user:1f3a"]
    policies.append(
        BudgetPolicy.model_validate(
            {"name": "designer", "scope": "agent", "match": "*/agentry:designer", "limits": LIMIT}
        )
    )
    ledger = MemoryLedger(policies, Calendar("UTC"), Thresholds(), 86400)
    assert ledger.ids(subjects) == ["user:1f3a", "agent:agentry%2Fagentry:designer"]
    # A run's agent stays counted whether or not a policy applies to it.
    run = subjects_of(Claims(typ="run", exp=0, namespace="agentry", execution="e", agent="bot", user="1f3a"))
    assert [i.partition(":")[0] for i in ledger.ids(run)] == ["user", "agent", "execution"]


def test_both_wires_behind_one_interface() -> None:
    assert set(WIRES) == set(Flavour)
    response = ChatResponse(
        message=Message(role="assistant", content=[TextBlock(text="hi")]),
        usage=TokenUsage(input_tokens=1, output_tokens=1),
        stop_reason="end_turn",
        provider="anthropic",
        model="m",
    )
    for flavour, wire in WIRES.items():
        assert wire.flavour is flavour
        refusal = wire.error(402, "no budget", RefusalType.BUDGET_EXCEEDED.value)
        assert "budget_exceeded" in str(refusal)
        assert "hi" in str(wire.answer(response, "c1", "m"))
        stream = wire.stream("c1", wire.parse(BODY, 16))
        assert stream.open("m") and stream.text("hi") and stream.close(response)
    assert (WIRES[Flavour.ANTHROPIC].unauthorized, WIRES[Flavour.OPENAI].unauthorized) == (
        "authentication_error",
        "invalid_api_key",
    )
