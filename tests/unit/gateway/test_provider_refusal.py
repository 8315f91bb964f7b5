"""The provider-layer changes the gateway relies on: a gateway refusal is final, sampling relayed."""

from __future__ import annotations

import pytest

from agentry_llm import (
    BreakerRegistry,
    ChatRequest,
    ChatResponse,
    Message,
    ProviderChain,
    ProviderError,
    ProvidersFailed,
    RetryPolicy,
    TextBlock,
    TokenUsage,
    ToolChoice,
)
from agentry_llm.anthropic_provider import sampling as anthropic_sampling
from agentry_llm.base import TextCallback
from agentry_llm.openai_provider import sampling as openai_sampling

pytestmark = pytest.mark.unit

REQUEST = ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text="x")])])


class Fake:
    def __init__(self, name: str, error: ProviderError | None = None) -> None:
        self._name = name
        self.error = error
        self.calls = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._name

    @property
    def endpoint(self) -> str:
        return "default"

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return ChatResponse(
            message=Message(role="assistant", content=[TextBlock(text="ok")]),
            stop_reason="end_turn",
            usage=TokenUsage(),
            provider="x",
            model=self._name,
        )

    async def aclose(self) -> None:
        return None


async def test_a_budget_refusal_stops_the_chain_without_retry_or_fallback() -> None:
    refusal = ProviderError("budget exhausted", provider="a", status=402, retryable=True, final=True)
    first, second = Fake("a", refusal), Fake("b")
    events: list[str] = []
    chain = ProviderChain(
        [first, second], BreakerRegistry(), RetryPolicy(attempts=3, initial=0), lambda k, d: events.append(k)
    )
    with pytest.raises(ProvidersFailed) as err:
        await chain.complete(REQUEST)
    assert err.value.final and str(err.value) == "refused by the LLM gateway: a: HTTP 402: budget exhausted"
    assert (first.calls, second.calls) == (1, 0) and events == []
    assert not refusal.retryable  # final wins over retryable


async def test_other_client_errors_still_fall_back() -> None:
    first = Fake("a", ProviderError("bad key", provider="a", status=401))
    second = Fake("b")
    response = await ProviderChain(
        [first, second], BreakerRegistry(), RetryPolicy(attempts=3, initial=0)
    ).complete(REQUEST)
    assert response.model == "b"


def test_sampling_parameters_per_protocol() -> None:
    request = REQUEST.model_copy(
        update={
            "temperature": 0.1,
            "top_p": 0.9,
            "stop_sequences": ["X"],
            "tool_choice": ToolChoice(type="any"),
        }
    )
    assert anthropic_sampling(request) == {
        "temperature": 0.1,
        "top_p": 0.9,
        "stop_sequences": ["X"],
        "tool_choice": {"type": "any"},
    }
    assert openai_sampling(request) == {
        "temperature": 0.1,
        "top_p": 0.9,
        "stop": ["X"],
        "tool_choice": "required",
    }
    named = REQUEST.model_copy(update={"tool_choice": ToolChoice(type="tool", name="shell")})
    assert anthropic_sampling(named) == {"tool_choice": {"type": "tool", "name": "shell"}}
    assert openai_sampling(named) == {"tool_choice": {"type": "function", "function": {"name": "shell"}}}
    assert anthropic_sampling(REQUEST) == {} == openai_sampling(REQUEST)
