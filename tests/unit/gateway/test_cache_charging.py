"""What a call is reserved and charged with prompt caching, and however it ended: cache-aware
estimates (worst case without knowledge, the read rate for a prefix the provider said it holds),
answers priced with their cache reads and writes, and "failed never means free"."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from agentry_common import pricing
from agentry_common.pricing import Price, usd_to_nanos
from agentry_gateway.budgets import Amount, estimate_call, estimate_input_tokens
from agentry_gateway.charging import charge, may_have_billed, usage_amount
from agentry_gateway.prompt_cache import TTL_MARGIN_SECONDS, CacheMemory, prefixes
from agentry_llm import ChatRequest, ChatResponse, Message, ProviderError, TextBlock, TokenUsage
from agentry_llm.caching import place_breakpoints

pytestmark = pytest.mark.unit

SONNET = "claude-sonnet-4-6"


def nanos(model: str, inp: int, out: int, default: Price | None = None, **cache: int) -> int:
    return usd_to_nanos(pricing.cost(model, inp, out, default, **cache))


def test_an_estimate_without_breakpoints_is_at_the_input_rate() -> None:
    amount = estimate_call(SONNET, 3_000, 500)
    assert amount == Amount(1_000 + 500, 1, nanos(SONNET, 1_000, 500))


def test_an_estimate_covers_writing_every_marked_prefix() -> None:
    """Nothing known cached: each part up to a breakpoint may be written at its TTL's rate."""
    amount = estimate_call(SONNET, 3_000, 500, breakpoints=[(200, "1h"), (700, "5m")])
    expected = nanos(SONNET, 1_000, 500, cache_write=700, cache_write_1h=200)
    assert amount.cost_nanos == expected > nanos(SONNET, 1_000, 500)
    assert amount.tokens == 1_500  # token limits count every input token alike
    # A breakpoint estimated past the whole input is cut at it.
    assert estimate_call(SONNET, 300, 0, breakpoints=[(150, "5m")]).cost_nanos == nanos(
        SONNET, 100, 0, cache_write=100
    )


def test_a_prefix_known_cached_is_estimated_at_the_read_rate() -> None:
    amount = estimate_call(SONNET, 3_000, 500, breakpoints=[(200, "1h"), (700, "5m")], cached=600)
    assert amount.cost_nanos == nanos(SONNET, 1_000, 500, cache_read=600, cache_write=100)
    assert amount.cost_nanos < estimate_call(SONNET, 3_000, 500).cost_nanos


def test_an_unpriced_model_at_the_default_price_never_undercharges_a_write() -> None:
    default = Price(Decimal("3"), Decimal("15"))  # unpricedModelPrice: no cache rates
    amount = estimate_call("mystery", 3_000, 0, default, breakpoints=[(1_000, "5m")])
    assert amount.cost_nanos == usd_to_nanos(Decimal(1_000) * 6 / 1_000_000)  # 2x the input rate
    answered = usage_amount("mystery", _answer(1_000, 0, read=1_000), default)
    assert answered.cost_nanos == usd_to_nanos(Decimal(1_000) * 3 / 1_000_000)  # a read at the input rate


def _answer(inp: int, out: int, *, read: int = 0, write: int = 0, write_1h: int = 0) -> ChatResponse:
    usage = TokenUsage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
    )
    message = Message(role="assistant", content=[TextBlock(text="ok")])
    return ChatResponse(
        message=message, stop_reason="end_turn", usage=usage, provider="anthropic", model=SONNET
    )


def test_an_answer_is_charged_what_the_provider_charges() -> None:
    answer = _answer(10_000, 200, read=8_000, write=1_500, write_1h=500)
    amount = usage_amount(SONNET, answer, None)
    assert amount.tokens == 10_200 and amount.messages == 1
    assert amount.cost_nanos == nanos(
        SONNET, 10_000, 200, cache_read=8_000, cache_write=1_500, cache_write_1h=500
    )
    # Sonnet at $3/MTok: 500 uncached, 8,000 read at 0.30, 1,000 written at 3.75, 500 at 6, 200 out at 15.
    assert amount.cost_usd == Decimal("0.0015") + Decimal("0.0024") + Decimal("0.00375") + Decimal(
        "0.003"
    ) + Decimal("0.003")


def conversation(turns: int) -> ChatRequest:
    """A loop's request at turn `turns`, marked as the runtime marks it."""
    messages = [Message(role="user", content=[TextBlock(text="task " * 400)])]
    for i in range(turns - 1):
        messages.append(Message(role="assistant", content=[TextBlock(text=f"step {i}")]))
        messages.append(Message(role="user", content=[TextBlock(text=f"result {i} " * 300)]))
    request = ChatRequest(system="You are careful. " * 300, messages=messages, max_tokens=100)
    return place_breakpoints(request)


def test_the_memory_makes_the_next_turn_read_what_this_one_cached() -> None:
    now = [1_000.0]
    memory = CacheMemory(clock=lambda: now[0])
    first, second = conversation(2), conversation(3)
    found = prefixes(SONNET, first)
    assert [p.ttl for p in found] == ["5m", "5m", "5m"] and found[0].tokens < found[-1].tokens
    assert memory.cached_tokens("ex-1", prefixes(SONNET, second)) == 0
    memory.remember("ex-1", found, TokenUsage(input_tokens=3_000, cache_write_tokens=2_900), started=now[0])
    # The next turn marks this turn's last prefix (the previous user message): read at least 2,900.
    assert memory.cached_tokens("ex-1", prefixes(SONNET, second)) == 2_900
    assert memory.cached_tokens("ex-2", prefixes(SONNET, second)) == 0  # another Execution's
    assert memory.cached_tokens("ex-1", prefixes("claude-opus-4-6", second)) == 0  # another model's cache
    now[0] += 300 - TTL_MARGIN_SECONDS  # the breakpoint's TTL, less the margin
    assert memory.cached_tokens("ex-1", prefixes(SONNET, second)) == 0
    memory.remember("ex-2", found, TokenUsage(input_tokens=3_000, cache_read_tokens=2_900), started=now[0])
    assert len(memory) == 1  # the expired entry went when the next one came


def test_the_memory_remembers_only_what_the_provider_reported_cached() -> None:
    memory = CacheMemory()
    found = prefixes(SONNET, conversation(2))
    memory.remember("ex-1", found, TokenUsage(input_tokens=3_000), started=memory.clock())
    assert len(memory) == 0
    memory.remember("ex-1", [], TokenUsage(input_tokens=3_000, cache_read_tokens=100), started=memory.clock())
    assert len(memory) == 0
    small = CacheMemory(max_entries=2)
    for i in range(3):
        small.remember(f"ex-{i}", found, TokenUsage(input_tokens=9, cache_read_tokens=9), small.clock())
    assert len(small) == 2 and small.cached_tokens("ex-0", found) == 0  # the oldest forgotten


def test_the_estimate_of_a_later_turn_is_cache_aware_and_still_covers_its_worst_case() -> None:
    memory = CacheMemory()
    first, second = conversation(2), conversation(3)
    size = len(second.model_dump_json())
    _, cold = memory.estimate("ex-1", SONNET, second, size, None)
    memory.remember(
        "ex-1",
        prefixes(SONNET, first),
        TokenUsage(input_tokens=3_000, cache_write_tokens=2_900),
        memory.clock(),
    )
    found, warm = memory.estimate("ex-1", SONNET, second, size, None)
    total = estimate_input_tokens(size)
    last = min(found[-1].tokens, total)
    assert warm.cost_nanos == nanos(SONNET, total, 100, cache_read=2_900, cache_write=last - 2_900)
    assert warm.cost_nanos < cold.cost_nanos == nanos(SONNET, total, 100, cache_write=last)
    assert warm.tokens == cold.tokens


def _failure(status: int | None, cause: BaseException | None = None) -> ProviderError:
    error = ProviderError("x", provider="p", status=status)
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "committed", "billed"),
    [
        (_failure(529), False, False),  # the provider declined the work
        (_failure(429), False, False),
        (_failure(500), True, True),  # text reached the client: the provider was at work
        (_failure(200), False, True),  # an error event after the 2xx
        (_failure(None, httpx.ReadTimeout("read")), False, True),  # sent, answer lost
        (_failure(None, httpx.RemoteProtocolError("cut")), False, True),
        (_failure(None, RuntimeError("wrapped")), False, True),
        (_failure(None, httpx.ConnectError("refused")), False, False),  # never reached the provider
        (_failure(None, httpx.ConnectTimeout("connect")), False, False),
    ],
)
def test_which_failed_attempts_the_provider_may_have_billed(
    error: ProviderError, committed: bool, billed: bool
) -> None:
    assert may_have_billed(error, committed) is billed


ESTIMATE = Amount(1_100, 1, 9_000)


def test_the_charge_for_each_ending() -> None:
    answer = Amount(600, 1, 4_000)
    assert charge(answer, ESTIMATE, 0) == (answer, "usage")  # answered
    # Answered after an attempt that broke mid-stream: both billed.
    assert charge(answer, ESTIMATE, 1) == (Amount(1_700, 1, 13_000), "usage+estimate")
    # Cut (deadline, client gone) with an attempt running, or failed after being accepted.
    assert charge(None, ESTIMATE, 1) == (ESTIMATE, "estimate")
    assert charge(None, ESTIMATE, 2) == (Amount(2_200, 1, 18_000), "estimate")  # one message
    assert charge(None, ESTIMATE, 0) == (Amount(), "none")  # declined everywhere: released
