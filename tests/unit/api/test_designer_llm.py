"""The designer's LLM on the shared provider layer: the request it sends, retries, plain errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentry_api.designer_llm import LLMError, ProviderLLM, llm_from_settings
from agentry_api.settings import Settings
from agentry_llm import ChatRequest, ChatResponse, Message, ProviderError, RetryPolicy, TextBlock, TokenUsage

pytestmark = pytest.mark.unit
NO_WAIT = RetryPolicy(attempts=3, initial=0.0, maximum=0.0)


class Scripted:
    """A ChatProvider answering from a list: a ProviderError is raised, anything else is the text."""

    name, model, endpoint = "anthropic/m", "m", "default"

    def __init__(self, *script: str | ProviderError) -> None:
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        self.requests.append(request)
        item = self.script.pop(0)
        if isinstance(item, ProviderError):
            raise item
        message = Message(role="assistant", content=[TextBlock(text=item)])
        usage = TokenUsage(input_tokens=7, output_tokens=3)
        return ChatResponse(message=message, stop_reason="end_turn", usage=usage, provider="x", model="m")

    async def aclose(self) -> None:
        pass


def test_the_history_goes_out_and_the_text_and_usage_come_back() -> None:
    provider = Scripted("a draft")
    llm = ProviderLLM(provider, 321, NO_WAIT)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"}]
    text, usage = asyncio.run(llm.complete("be brief", history))
    assert (text, usage) == ("a draft", {"inputTokens": 7, "outputTokens": 3})
    [sent] = provider.requests
    assert sent.system == "be brief" and sent.max_tokens == 321
    assert [(m.role, m.text()) for m in sent.messages] == [("user", "hi"), ("assistant", "yes?")]


def test_passing_failures_are_retried_and_others_reported_plainly() -> None:
    busy = ProviderError("overloaded", provider="p", status=529, retryable=True)
    provider = Scripted(busy, busy, "fine")
    assert asyncio.run(ProviderLLM(provider, 64, NO_WAIT).complete("s", []))[0] == "fine"
    cases = [
        (ProviderError("bad key", provider="p", status=401), "refused the API key"),
        (ProviderError("x", provider="p", status=400), "answered 400"),
        (ProviderError("reset", provider="p", retryable=True), "cannot be reached"),
        (ProviderError("budget", provider="p", status=402, final=True), "gateway refused the call: budget"),
    ]
    for error, message in cases:
        provider = Scripted(error, error, error)
        with pytest.raises(LLMError, match=message):
            asyncio.run(ProviderLLM(provider, 64, NO_WAIT).complete("s", []))
        assert len(provider.requests) == (3 if error.retryable else 1)


def test_no_key_no_llm_and_the_settings_choose_model_and_endpoint() -> None:
    assert llm_from_settings(Settings(anthropic_api_key=None)) is None
    llm = llm_from_settings(
        Settings(anthropic_api_key="sk-test", anthropic_base_url="http://127.0.0.1:9", chat_model="claude-x")
    )
    assert llm is not None and llm.model == "claude-x" and llm.max_tokens == Settings().chat_max_tokens
    assert llm.provider.endpoint == "http://127.0.0.1:9"
    asyncio.run(llm.aclose())
