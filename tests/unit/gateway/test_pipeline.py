"""The call pipeline's pieces that need no server: budget subjects, the two wires behind one
interface, and the `llmCalls` record."""

from __future__ import annotations

import pytest

from agentry_common.governance import RefusalType, budget_subjects
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import Claims, RunLimits
from agentry_gateway.calls import subjects_of
from agentry_gateway.service import WIRES
from agentry_llm import ChatResponse, Message, TextBlock, TokenUsage

pytestmark = pytest.mark.unit

# One body both protocols accept.
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
