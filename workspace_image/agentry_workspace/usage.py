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
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    calls: int = 0


@dataclass
class UsageTracker:
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    turns: int = 0
    model: str | None = None  # the model that answered last
    retries: int = 0
    fallbacks: int = 0
    by_model: dict[str, ModelUsage] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def unpriced_models(self) -> list[str]:
        return sorted(m for m in self.by_model if not pricing.is_priced(m))

    def add(self, model: str, usage: TokenUsage) -> Decimal:
        """Record one successful model call; returns its cost."""
        call_cost = pricing.cost(model, usage.input_tokens, usage.output_tokens)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost += call_cost
        self.turns += 1
        self.model = model
        entry = self.by_model.setdefault(model, ModelUsage())
        entry.input_tokens += usage.input_tokens
        entry.output_tokens += usage.output_tokens
        entry.cost += call_cost
        entry.calls += 1
        return call_cost

    def result_usage(self) -> dict[str, Any]:
        """Exactly the fields of the shared `Usage` model (Execution.status.usage)."""
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUSD": pricing.usd_string(self.cost),
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
                    "inputTokens": u.input_tokens,
                    "outputTokens": u.output_tokens,
                    "costUSD": pricing.usd_string(u.cost),
                    "calls": u.calls,
                }
                for m, u in self.by_model.items()
            },
        }

    def to_state(self) -> dict[str, Any]:
        # Exact (unrounded) cost so a resumed run keeps summing precisely.
        return {
            "turns": self.turns,
            "model": self.model,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "byModel": {
                m: {
                    "inputTokens": u.input_tokens,
                    "outputTokens": u.output_tokens,
                    "cost": str(u.cost),
                    "calls": u.calls,
                }
                for m, u in self.by_model.items()
            },
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
            entry = ModelUsage(
                input_tokens=int(u["inputTokens"]),
                output_tokens=int(u["outputTokens"]),
                cost=Decimal(str(u["cost"])),
                calls=int(u["calls"]),
            )
            tracker.by_model[model] = entry
            tracker.input_tokens += entry.input_tokens
            tracker.output_tokens += entry.output_tokens
            tracker.cost += entry.cost
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
