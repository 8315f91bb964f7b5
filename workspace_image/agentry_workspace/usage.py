"""Token and cost accounting for one run (across approval pauses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agentry_common import pricing
from agentry_common.models import BudgetSpec, usd
from agentry_llm.types import TokenUsage

from .outcome import StopReason


@dataclass
class ModelUsage:
    input_tokens: int = 0  # all input, cached or not
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens
    cache_write_tokens: int = 0  # of input_tokens
    cost: Decimal = Decimal(0)  # what the provider charges (cache rates applied)
    uncached_cost: Decimal = Decimal(0)  # the same calls with every input token at the input rate
    calls: int = 0

    @classmethod
    def of_call(cls, model: str, usage: TokenUsage) -> ModelUsage:
        """One call, priced as the provider charges it and as it would cost with no caching."""
        cost = pricing.cost(
            model,
            usage.input_tokens,
            usage.output_tokens,
            cache_read=usage.cache_read_tokens,
            cache_write=usage.cache_write_tokens,
            cache_write_1h=usage.cache_write_1h_tokens,
        )
        return cls(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost=cost,
            uncached_cost=pricing.cost(model, usage.input_tokens, usage.output_tokens),
            calls=1,
        )

    def merge(self, other: ModelUsage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost += other.cost
        self.uncached_cost += other.uncached_cost
        self.calls += other.calls

    def tokens(self) -> dict[str, int]:
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read_tokens,
            "cacheWriteTokens": self.cache_write_tokens,
        }

    def state(self) -> dict[str, Any]:
        # Exact (unrounded) costs so a resumed run keeps summing precisely.
        return {
            **self.tokens(),
            "cost": str(self.cost),
            "uncachedCost": str(self.uncached_cost),
            "calls": self.calls,
        }

    @classmethod
    def from_state(cls, u: dict[str, Any]) -> ModelUsage:
        cost = Decimal(str(u["cost"]))
        return cls(
            input_tokens=int(u["inputTokens"]),
            output_tokens=int(u["outputTokens"]),
            cache_read_tokens=int(u.get("cacheReadTokens", 0)),
            cache_write_tokens=int(u.get("cacheWriteTokens", 0)),
            cost=cost,
            uncached_cost=Decimal(str(u.get("uncachedCost", cost))),
            calls=int(u["calls"]),
        )


@dataclass
class UsageTracker:
    """A run's calls: `total` sums `by_model`; `turns` counts the agent's turns (a compaction's
    summary call is charged but is not a turn)."""

    total: ModelUsage = field(default_factory=ModelUsage)
    turns: int = 0
    model: str | None = None  # the model that answered last
    retries: int = 0
    fallbacks: int = 0
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return self.total.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.total.output_tokens

    @property
    def cost(self) -> Decimal:
        return self.total.cost

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def unpriced_models(self) -> list[str]:
        return sorted(m for m in self.by_model if not pricing.is_priced(m))

    def add(self, model: str, usage: TokenUsage, *, turn: bool = True) -> Decimal:
        """Record one successful model call; returns what the provider charges for it."""
        call = ModelUsage.of_call(model, usage)
        self.by_model.setdefault(model, ModelUsage()).merge(call)
        self.total.merge(call)
        if turn:
            self.turns += 1
        self.model = model
        return call.cost

    def result_usage(self) -> dict[str, Any]:
        """Exactly the fields of the shared `Usage` model (Execution.status.usage)."""
        return {
            **self.total.tokens(),
            "costUSD": pricing.usd_string(self.total.cost),
            "uncachedCostUSD": pricing.usd_string(self.total.uncached_cost),
            "model": self.model,
            "turns": self.turns,
        }

    def event_usage(self) -> dict[str, Any]:
        return {
            **self.result_usage(),
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "costKnown": not self.unpriced_models,
            "unpricedModels": self.unpriced_models,
            "byModel": {
                m: {
                    **u.tokens(),
                    "costUSD": pricing.usd_string(u.cost),
                    "uncachedCostUSD": pricing.usd_string(u.uncached_cost),
                    "calls": u.calls,
                }
                for m, u in self.by_model.items()
            },
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "model": self.model,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "byModel": {m: u.state() for m, u in self.by_model.items()},
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> UsageTracker:
        tracker = cls(
            turns=int(data.get("turns", 0)),
            model=data.get("model"),
            retries=int(data.get("retries", 0)),
            fallbacks=int(data.get("fallbacks", 0)),
        )
        for model, u in (data.get("byModel") or {}).items():
            entry = ModelUsage.from_state(u)
            tracker.by_model[model] = entry
            tracker.total.merge(entry)
        return tracker


def budget_stop(budget: BudgetSpec, usage: UsageTracker) -> tuple[StopReason, str] | None:
    """The stop reason and summary when a run's token or cost budget is spent (None: it is not)."""
    if budget.max_tokens_per_run is not None and usage.total_tokens >= budget.max_tokens_per_run:
        return (
            StopReason.MAX_TOKENS,
            f"Stopped: budget.maxTokensPerRun ({budget.max_tokens_per_run}) reached "
            f"({usage.total_tokens} tokens used).",
        )
    limit = usd(budget.max_cost_per_run_usd)
    if limit is not None and usage.cost >= limit:
        return (
            StopReason.MAX_COST,
            f"Stopped: budget.maxCostPerRunUSD ({budget.max_cost_per_run_usd}) reached "
            f"({usage.result_usage()['costUSD']} USD used).",
        )
    return None
