"""agentry_llm's REQUEST_SENT hook: called once a call's request has gone out, before its answer, in
the context that set it only (the gateway stores the journal entries riding a call then)."""

from __future__ import annotations

import asyncio

import pytest

from agentry_llm import ChatRequest, Message, TextBlock
from agentry_llm.anthropic_provider import AnthropicProvider
from agentry_llm.http import REQUEST_SENT
from agentry_testing.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.unit

ASK = ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text="hi")])])


async def test_the_hook_runs_once_the_request_is_sent_and_before_the_answer() -> None:
    with ScriptedLLM([{"text": "late", "delay": 0.3}, {"text": "again"}]) as llm:
        provider = AnthropicProvider(model="claude-sonnet-4-6", api_key="k", base_url=llm.url)
        order: list[str] = []

        async def call_with_hook() -> None:
            REQUEST_SENT.set(lambda: order.append("sent"))
            await provider.complete(ASK, on_text=lambda _: order.append("answer"))

        await asyncio.create_task(call_with_hook())  # its own context, as the gateway's
        assert order == ["sent", "answer"] and llm.requests  # before the answer's first text
        await provider.complete(ASK)  # this context never set it: not called
        assert order == ["sent", "answer"]
        await provider.aclose()
