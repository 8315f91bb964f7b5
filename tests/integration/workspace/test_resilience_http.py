"""Fallback and circuit breaking with the real SDKs over HTTP (scripted 529/500 responses)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agentry_common.models import ModelSpec
from agentry_llm import (
    BreakerRegistry,
    ChatRequest,
    Message,
    ProviderChain,
    RetryPolicy,
    TextBlock,
    build_chain_providers,
)
from agentry_testing.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.integration

REQUEST = ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text="hi")])])
FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.05)


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedLLM, ScriptedLLM]]:
    with ScriptedLLM() as primary, ScriptedLLM() as backup:
        yield primary, backup


def make_chain(
    primary: ScriptedLLM, backup: ScriptedLLM, breakers: BreakerRegistry
) -> tuple[ProviderChain, list[tuple[str, dict[str, Any]]]]:
    spec = ModelSpec.model_validate(
        {
            "provider": "anthropic",
            "name": "claude-sonnet-4-6",
            "fallbacks": [{"provider": "openai", "name": "gpt-4.1-mini"}],
        }
    )
    env = {
        "ANTHROPIC_API_KEY": "a-key-123456789",
        "ANTHROPIC_BASE_URL": primary.url,
        "OPENAI_API_KEY": "o-key-123456789",
        "OPENAI_BASE_URL": backup.openai_url,
    }
    events: list[tuple[str, dict[str, Any]]] = []
    chain = ProviderChain(
        build_chain_providers(spec, env),
        breakers,
        FAST,
        on_event=lambda kind, data: events.append((kind, data)),
    )
    return chain, events


async def test_fallback_after_repeated_529_and_500(servers: tuple[ScriptedLLM, ScriptedLLM]) -> None:
    primary, backup = servers
    primary.script([{"error": {"status": 529}}, {"error": {"status": 500}}, {"error": {"status": 529}}])
    backup.script([{"text": "answer from the fallback"}])
    chain, events = make_chain(primary, backup, BreakerRegistry(fail_max=10))

    response = await chain.complete(REQUEST)

    assert response.message.text() == "answer from the fallback"
    assert response.provider == "openai" and response.model == "gpt-4.1-mini"
    assert len(primary.requests) == 3 and len(backup.requests) == 1
    assert [k for k, _ in events] == ["retry", "retry", "fallback"]
    assert [d["status"] for k, d in events if k == "retry"] == [529, 500]
    assert events[-1][1] == {
        "from": "anthropic/claude-sonnet-4-6",
        "to": "openai/gpt-4.1-mini",
        "reason": "HTTP 529: scripted 529",
    }
    for provider in chain.providers:
        await provider.aclose()


async def test_breaker_opens_then_closes_after_reset(servers: tuple[ScriptedLLM, ScriptedLLM]) -> None:
    primary, backup = servers
    breakers = BreakerRegistry(fail_max=3, reset_timeout=0.5)
    chain, events = make_chain(primary, backup, breakers)
    primary.script([{"error": {"status": 529}, "repeat": 3}, {"text": "primary recovered"}])
    backup.script([{"text": "backup 1"}, {"text": "backup 2"}])

    assert (await chain.complete(REQUEST)).message.text() == "backup 1"
    assert (
        "breaker",
        {"provider": "anthropic/claude-sonnet-4-6", "state": "open", "previous": "closed"},
    ) in events
    # While open, the primary gets no request at all.
    assert (await chain.complete(REQUEST)).message.text() == "backup 2"
    assert len(primary.requests) == 3
    assert any(k == "breaker" and d.get("action") == "skipped" for k, d in events)
    # After the reset timeout, one trial request goes to the primary and closes the breaker.
    await asyncio.sleep(0.6)
    events.clear()
    assert (await chain.complete(REQUEST)).message.text() == "primary recovered"
    assert len(primary.requests) == 4 and len(backup.requests) == 2
    assert events == [
        ("breaker", {"provider": "anthropic/claude-sonnet-4-6", "state": "closed", "previous": "open"})
    ]
    for provider in chain.providers:
        await provider.aclose()
