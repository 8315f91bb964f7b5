"""The one pricing table: USD per million tokens, per model. Budgets and usage totals use it.

Prices are list prices for standard (non-batch) requests as published on Anthropic's and OpenAI's
pricing pages; review them when adding a model. Prompt caching has its own rates:
- Anthropic (docs.anthropic.com, "Prompt caching", pricing): a cache write costs 1.25x the input rate
  with the default 5-minute TTL and 2x with the 1-hour TTL; a cache read costs 0.1x.
- OpenAI (platform.openai.com/docs/pricing, "Cached input"): caching is automatic, writes cost the
  input rate, reads the model's published cached-input rate.
A model that is not in the table costs 0 here and is reported as unpriced (see `is_priced`); the
runtime warns about that in its events. The LLM gateway does not let such a model escape a budget in
USD: it refuses it where a `costUSD` limit applies, unless its governance file sets a default price
(`unpricedModelPrice`, passed here as `default`). `PROVIDER_MODELS` says which provider publishes
which model (the gateway's default model allow-list of a channel).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Final

MILLION: Final = Decimal(1_000_000)
# Budgets count costs in nano-USD (USD * 1e9), integers so that Firestore sums stay exact.
NANOS_PER_USD: Final = 10**9
# Costs are kept exact internally and rounded only for display (6 decimals matches the CR's USD type).
DISPLAY_QUANTUM: Final = Decimal("0.000001")


@dataclass(frozen=True)
class Price:
    """USD per million tokens. A price without cache rates (the gateway's `unpricedModelPrice`)
    charges a cache read at the input rate and a write at twice it, never less than any provider's
    own rate for it."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None  # the 5-minute TTL
    cache_write_1h_per_mtok: Decimal | None = None

    @property
    def cache_read(self) -> Decimal:
        return self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok

    @property
    def cache_write(self) -> Decimal:
        return self.input_per_mtok * 2 if self.cache_write_per_mtok is None else self.cache_write_per_mtok

    @property
    def cache_write_1h(self) -> Decimal:
        rate = self.cache_write_1h_per_mtok
        return self.input_per_mtok * 2 if rate is None else rate


def _p(inp: str, out: str) -> Price:
    """An Anthropic price: cache rates from the input rate (1.25x, 2x, 0.1x)."""
    rate = Decimal(inp)
    return Price(rate, Decimal(out), rate / 10, rate * Decimal("1.25"), rate * 2)


def _o(inp: str, cached: str, out: str) -> Price:
    """An OpenAI price: writes at the input rate, reads at the cached-input rate."""
    rate = Decimal(inp)
    return Price(rate, Decimal(out), Decimal(cached), rate, rate)


ANTHROPIC_PRICES: Final[dict[str, Price]] = {
    "claude-fable-5-1": _p("10", "50"),
    "claude-opus-5-5": _p("4", "20"),
    "claude-opus-5": _p("5", "25"),
    "claude-sonnet-5-5": _p("2", "10"),
    "claude-opus-4-6": _p("5", "25"),
    "claude-sonnet-4-6": _p("3", "15"),
    "claude-opus-4-5": _p("5", "25"),
    "claude-opus-4-1": _p("15", "75"),
    "claude-opus-4-0": _p("15", "75"),
    "claude-opus-4": _p("15", "75"),
    "claude-sonnet-4-5": _p("3", "15"),
    "claude-sonnet-4-0": _p("3", "15"),
    "claude-sonnet-4": _p("3", "15"),
    "claude-3-7-sonnet": _p("3", "15"),
    "claude-3-5-sonnet": _p("3", "15"),
    "claude-haiku-4-5": _p("1", "5"),
    "claude-3-5-haiku": _p("0.80", "4"),
    "claude-3-haiku": _p("0.25", "1.25"),
}
OPENAI_PRICES: Final[dict[str, Price]] = {
    "gpt-5": _o("1.25", "0.125", "10"),
    "gpt-5-mini": _o("0.25", "0.025", "2"),
    "gpt-5-nano": _o("0.05", "0.005", "0.40"),
    "gpt-4.1": _o("2", "0.50", "8"),
    "gpt-4.1-mini": _o("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _o("0.10", "0.025", "0.40"),
    "gpt-4o": _o("2.50", "1.25", "10"),
    "gpt-4o-mini": _o("0.15", "0.075", "0.60"),
    "o3": _o("2", "0.50", "8"),
    "o4-mini": _o("1.10", "0.275", "4.40"),
}
# Which models each provider ("anthropic", "openai": agentry_common.models.Provider values) publishes.
PROVIDER_MODELS: Final[dict[str, frozenset[str]]] = {
    "anthropic": frozenset(ANTHROPIC_PRICES),
    "openai": frozenset(OPENAI_PRICES),
}
PRICES: Final[dict[str, Price]] = {**ANTHROPIC_PRICES, **OPENAI_PRICES}

# Dated snapshots ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06") and "-latest" aliases cost
# the same as their family. Prefix matching is deliberately avoided: "gpt-4.1" must not price
# "gpt-4.1-mini".
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def table_name(model: str) -> str:
    """The name a model has in the table: lower case, without a snapshot date or `-latest`."""
    name = model.strip().lower()
    return name if name in PRICES else _SNAPSHOT.sub("", name)


def price_of(model: str, default: Price | None = None) -> Price | None:
    """The price of a model; `default` (None unless given) if it is not in the table."""
    return PRICES.get(table_name(model), default)


def is_priced(model: str) -> bool:
    return price_of(model) is not None


def published_by(provider: str, model: str) -> bool:
    """True when `provider`'s part of the table lists `model` (snapshots and `-latest` included)."""
    return table_name(model) in PROVIDER_MODELS.get(provider, frozenset())


def cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    default: Price | None = None,
    *,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
) -> Decimal:
    """Exact USD cost of one call; at `default` for a model not in the table, else Decimal(0)
    (check `is_priced`). `input_tokens` counts all input; `cache_read` and `cache_write` are the
    parts of it the provider read from or wrote to its cache, `cache_write_1h` the part of the
    writes with the 1-hour TTL (agentry_llm.TokenUsage)."""
    price = price_of(model, default)
    if price is None:
        return Decimal(0)
    cache_write_1h = min(cache_write_1h, cache_write)
    uncached = max(0, input_tokens - cache_read - cache_write)
    return (
        Decimal(uncached) * price.input_per_mtok
        + Decimal(cache_read) * price.cache_read
        + Decimal(cache_write - cache_write_1h) * price.cache_write
        + Decimal(cache_write_1h) * price.cache_write_1h
        + Decimal(output_tokens) * price.output_per_mtok
    ) / MILLION


# The shortest prefix a breakpoint caches, in tokens (Anthropic, "Prompt caching", "Cache
# limitations"); a shorter one is processed uncached and costs no write. OpenAI caches prompts of
# 1024 tokens or more by itself, in steps of 128 ("Prompt caching" guide). Unlisted: 1024.
CACHE_MIN_TOKENS: Final[dict[str, int]] = {
    "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096,
    "claude-3-5-haiku": 2048,
    "claude-3-haiku": 2048,
}
CACHE_MIN_DEFAULT: Final = 1024
CACHE_MAX_BREAKPOINTS: Final = 4  # Anthropic: at most 4 cache_control blocks per request


def cache_min_tokens(model: str) -> int:
    return CACHE_MIN_TOKENS.get(table_name(model), CACHE_MIN_DEFAULT)


def usd_string(amount: Decimal) -> str:
    """The wire form of a cost: a plain decimal string, at most 6 decimals, never exponent form."""
    rounded = amount.quantize(DISPLAY_QUANTUM, rounding=ROUND_HALF_UP)
    text = format(rounded.normalize(), "f")
    return text if text != "-0" else "0"


def usd_to_nanos(amount: Decimal) -> int:
    """USD as nano-USD, rounded up (a cost is never under-counted)."""
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD
