"""agentry_llm's REQUEST_SENT hook: called once a call's request has gone out, before its answer, in
the context that set it only (the gateway stores the journal entries riding a call then)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentry_llm import ChatRequest, Message, TextBlock
from agentry_llm.anthropic_provider import AnthropicProvider
from agentry_llm.http import REQUEST_SENT
from agentry_testing.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.unit

ASK = ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text="hi")])])


async def test_the_hook_runs_once_the_request_is_sent_and_before_the_answer() -> None:
    with ScriptedLLM([{"text": "late", "delay": 1.0}, {"text": "again"}]) as llm:
        provider = AnthropicProvider(model="claude-sonnet-4-6", api_key="k", base_url=llm.url)
        sent: list[float] = []

        async def call_with_hook() -> float:
            REQUEST_SENT.set(lambda: sent.append(time.monotonic()))
            await provider.complete(ASK)
            return time.monotonic()

        answered = await asyncio.create_task(call_with_hook())  # its own context, as the gateway's
        assert len(sent) == 1 and llm.requests
        assert answered - sent[0] > 0.5  # called while the answer was still a second away
        await provider.complete(ASK)  # this context never set it: not called
        assert len(sent) == 1
        await provider.aclose()
