"""The one pricing table: USD per million tokens, per model. Budgets and usage totals use it.

Prices are list prices for standard (non-batch, non-cached) requests as published on Anthropic's
and OpenAI's pricing pages; review them when adding a model. Cache writes/reads are not modelled:
the runtime does not send cache_control.
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
    input_per_mtok: Decimal
    output_per_mtok: Decimal


def _p(inp: str, out: str) -> Price:
    return Price(Decimal(inp), Decimal(out))


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
    "gpt-5": _p("1.25", "10"),
    "gpt-5-mini": _p("0.25", "2"),
    "gpt-5-nano": _p("0.05", "0.40"),
    "gpt-4.1": _p("2", "8"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.40"),
    "gpt-4o": _p("2.50", "10"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "o3": _p("2", "8"),
    "o4-mini": _p("1.10", "4.40"),
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


def cost(model: str, input_tokens: int, output_tokens: int, default: Price | None = None) -> Decimal:
    """Exact USD cost of one call; at `default` for a model not in the table, else Decimal(0)
    (check `is_priced`)."""
    price = price_of(model, default)
    if price is None:
        return Decimal(0)
    return (
        Decimal(input_tokens) * price.input_per_mtok + Decimal(output_tokens) * price.output_per_mtok
    ) / MILLION


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
