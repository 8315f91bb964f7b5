"""Amounts of usage (tokens, messages, cost in nano-USD) and what one call uses or may use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from agentry_common import pricing
from agentry_common.pricing import Price, nanos_to_usd, usd_to_nanos

# Input tokens are estimated from the request's UTF-8 size before a call (no tokenizer in the
# gateway). English prose and code run at ~4 bytes per token with Claude's and OpenAI's tokenizers;
# 3 over-reserves a little so that an estimate is rarely below the truth. Output is bounded exactly
# by max_tokens, so only the input estimate can ever be short (see docs/governance.md, "Bound").
BYTES_PER_TOKEN_ESTIMATE: Final = 3.0
# A reservation not settled by then belongs to a crashed gateway pod: it is counted as spent at its
# estimate (never dropped, so a crash cannot hide usage). Longer than any call the gateway allows.
RESERVATION_TTL_SECONDS: Final = 3600.0


class Metric(StrEnum):
    TOKENS = "tokens"
    MESSAGES = "messages"
    COST = "costUSD"


@dataclass(frozen=True)
class Amount:
    tokens: int = 0
    messages: int = 0
    cost_nanos: int = 0  # USD * 1e9, integer so Firestore sums stay exact

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.tokens + other.tokens, self.messages + other.messages, self.cost_nanos + other.cost_nanos
        )

    def __sub__(self, other: Amount) -> Amount:
        return Amount(
            self.tokens - other.tokens, self.messages - other.messages, self.cost_nanos - other.cost_nanos
        )

    def get(self, metric: Metric) -> int:
        if metric is Metric.TOKENS:
            return self.tokens
        if metric is Metric.MESSAGES:
            return self.messages
        return self.cost_nanos

    def to_list(self) -> list[int]:
        return [self.tokens, self.messages, self.cost_nanos]

    @classmethod
    def from_list(cls, value: Any) -> Amount:
        if isinstance(value, list | tuple) and len(value) == 3:
            return cls(int(value[0]), int(value[1]), int(value[2]))
        return cls()

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)


def call_amount(
    model: str,
    input_tokens: int,
    output_tokens: int,
    messages: int = 1,
    default: Price | None = None,
    *,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
) -> Amount:
    """The usage of one call as counted by budgets (cost from the one pricing table, rounded up;
    a model not in it at `default`, the governance file's `unpricedModelPrice`, else 0).
    `input_tokens` counts all input, the cache arguments the parts of it the provider read from or
    wrote to its cache (`pricing.cost`); token limits count every input token alike."""
    cost = pricing.cost(
        model,
        input_tokens,
        output_tokens,
        default,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=cache_write_1h,
    )
    return Amount(tokens=input_tokens + output_tokens, messages=messages, cost_nanos=usd_to_nanos(cost))


def estimate_input_tokens(request_bytes: int) -> int:
    return math.ceil(max(0, request_bytes) / BYTES_PER_TOKEN_ESTIMATE)


def estimate_call(
    model: str,
    request_bytes: int,
    max_tokens: int,
    default: Price | None = None,
    *,
    breakpoints: Sequence[tuple[int, str]] = (),
    cached: int = 0,
) -> Amount:
    """What a call may use at most (up to the input estimate): reserved before it starts.

    `breakpoints`: the estimated tokens through each prompt-cache breakpoint, in order, and its TTL
    ("5m", "1h"); `cached`: tokens of the prefix known to be in the provider's cache. The cached
    part is priced at the read rate, the rest of each marked prefix at its write rate (the worst
    case: the provider writes it), the remainder at the input rate."""
    total = estimate_input_tokens(request_bytes)
    read = min(max(0, cached), total)
    start = read
    write = write_1h = 0
    for through, ttl in breakpoints:
        end = min(through, total)
        if end > start:
            write += end - start
            write_1h += end - start if ttl == "1h" else 0
            start = end
    return call_amount(
        model,
        total,
        max(0, max_tokens),
        default=default,
        cache_read=read,
        cache_write=write,
        cache_write_1h=write_1h,
    )
