"""Retries, the circuit breaker and the fallback chain, on fake providers (no HTTP here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentry_llm import (
    AsyncBreaker,
    BreakerOpen,
    BreakerRegistry,
    ChatRequest,
    Message,
    ProviderChain,
    ProviderError,
    ProvidersFailed,
    RetryPolicy,
    TextBlock,
)

from .fakes import FakeProvider, overloaded, text

pytestmark = pytest.mark.unit

REQUEST = ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text="hi")])])
FAST = RetryPolicy(attempts=3, initial=0.001, maximum=0.01)


def chain(
    *providers: FakeProvider, breakers: BreakerRegistry | None = None, policy: RetryPolicy = FAST
) -> tuple[ProviderChain, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    c = ProviderChain(
        list(providers),
        breakers or BreakerRegistry(fail_max=100, reset_timeout=60),
        policy,
        on_event=lambda kind, data: events.append((kind, data)),
    )
    return c, events


async def test_retry_then_success_records_each_retry() -> None:
    provider = FakeProvider([overloaded(), overloaded(), text("ok")])
    c, events = chain(provider)
    response = await c.complete(REQUEST)
    assert response.message.text() == "ok"
    retries = [d for k, d in events if k == "retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["status"] == 529 for r in retries)
    assert (c.stats.calls, c.stats.retries, c.stats.fallbacks) == (3, 2, 0)


async def test_fallback_after_repeated_overload() -> None:
    first = FakeProvider([overloaded()] * 3)
    second = FakeProvider([text("from b")], name="openai/gpt-4.1-mini")
    c, events = chain(first, second)
    response = await c.complete(REQUEST)
    assert response.message.text() == "from b"
    assert len(first.requests) == 3 and len(second.requests) == 1
    kinds = [k for k, _ in events]
    assert kinds == ["retry", "retry", "fallback"]
    assert events[-1][1]["reason"].startswith("HTTP 529")


async def test_client_errors_fall_back_without_retrying() -> None:
    first = FakeProvider([ProviderError("bad key", provider="a", status=401, retryable=False)])
    second = FakeProvider([text("b")], name="openai/x")
    c, events = chain(first, second)
    assert (await c.complete(REQUEST)).message.text() == "b"
    assert len(first.requests) == 1
    assert [k for k, _ in events] == ["fallback"]


async def test_retry_after_from_the_server_is_honoured_but_capped() -> None:
    policy = RetryPolicy(attempts=2, initial=5, maximum=0.05)
    err = ProviderError("slow down", provider="a", status=429, retryable=True, retry_after=30)
    c, events = chain(FakeProvider([err, text("ok")]), policy=policy)
    await c.complete(REQUEST)
    assert events[0][1]["waitSeconds"] == 0.05


async def test_all_providers_failing_raises_with_every_reason() -> None:
    c, _ = chain(FakeProvider([overloaded()] * 3), FakeProvider([overloaded()] * 3, name="b/x"))
    with pytest.raises(ProvidersFailed) as info:
        await c.complete(REQUEST)
    assert [f.provider for f in info.value.failures] == ["anthropic/claude-sonnet-4-6", "b/x"]


async def test_breaker_opens_skips_the_provider_then_closes_after_a_good_trial() -> None:
    breakers = BreakerRegistry(fail_max=3, reset_timeout=0.3)
    primary = FakeProvider([overloaded()] * 3 + [text("primary is back")])
    backup = FakeProvider([text("backup 1"), text("backup 2")], name="openai/gpt-4.1-mini")
    c, events = chain(primary, backup, breakers=breakers)

    assert (await c.complete(REQUEST)).message.text() == "backup 1"
    assert ("breaker", {"provider": primary.name, "state": "open", "previous": "closed"}) in events
    # Open: the primary is skipped without a request.
    events.clear()
    assert (await c.complete(REQUEST)).message.text() == "backup 2"
    assert len(primary.requests) == 3
    assert events[0] == ("breaker", {"provider": primary.name, "state": "open", "action": "skipped"})
    # After the reset timeout one trial goes through; it succeeds and closes the breaker.
    await asyncio.sleep(0.35)
    events.clear()
    assert (await c.complete(REQUEST)).message.text() == "primary is back"
    assert ("breaker", {"provider": primary.name, "state": "closed", "previous": "open"}) in events


async def test_failed_trial_reopens_the_breaker() -> None:
    breaker = AsyncBreaker("p", fail_max=1, reset_timeout=0.1)

    async def fail() -> None:
        raise overloaded()

    async def ok() -> str:
        return "ok"

    counts = lambda e: True  # noqa: E731
    with pytest.raises(ProviderError):
        await breaker.call(fail, counts)
    assert breaker.state == "open"
    with pytest.raises(BreakerOpen):
        await breaker.call(ok, counts)
    await asyncio.sleep(0.15)
    with pytest.raises(ProviderError):
        await breaker.call(fail, counts)
    assert breaker.state == "open"
    await asyncio.sleep(0.15)
    assert await breaker.call(ok, counts) == "ok"
    assert breaker.state == "closed"


async def test_cancellation_and_client_errors_do_not_count_as_failures() -> None:
    breaker = AsyncBreaker("p", fail_max=1, reset_timeout=60)

    async def hang() -> None:
        await asyncio.sleep(10)

    async def bad_request() -> None:
        raise ProviderError("bad", provider="p", status=400, retryable=False)

    task = asyncio.create_task(breaker.call(hang, lambda e: True))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProviderError):
        await breaker.call(bad_request, lambda e: isinstance(e, ProviderError) and e.retryable)
    assert breaker.state == "closed" and breaker.fail_counter == 0


async def test_breakers_are_shared_per_provider_across_concurrent_chains() -> None:
    breakers = BreakerRegistry(fail_max=2, reset_timeout=60)
    a = FakeProvider([overloaded()] * 2)
    b = FakeProvider([text("x")] * 4, name="b/x")
    c1, _ = chain(a, b, breakers=breakers, policy=RetryPolicy(attempts=1, initial=0, maximum=0))
    c2, _ = chain(a, b, breakers=breakers, policy=RetryPolicy(attempts=1, initial=0, maximum=0))
    await asyncio.gather(c1.complete(REQUEST), c2.complete(REQUEST))
    assert breakers.get(f"{a.name}@{a.endpoint}").state == "open"
    await c1.complete(REQUEST)
    assert len(a.requests) == 2  # the third call skipped the open breaker
