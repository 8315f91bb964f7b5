"""Usage: tokens and cost per user and per agent over a time window, in buckets (hour or day).

Input splits into prompt-cache reads, cache writes and uncached input, and the saving is what the
runs would have cost without caching less what they cost. A run from before the runtime reported
these (no `cacheReadTokens`, no `uncachedCostUSD`) counts all its input as uncached and saves nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agentry_common.pricing import usd_string

from ..auth import User
from ..schemas import UsageAgent, UsageBucket, UsageModel, UsageOut
from ..storage import Store

WINDOWS: dict[str, tuple[dt.timedelta, dt.timedelta]] = {
    "24h": (dt.timedelta(hours=24), dt.timedelta(hours=1)),
    "7d": (dt.timedelta(days=7), dt.timedelta(days=1)),
    "30d": (dt.timedelta(days=30), dt.timedelta(days=1)),
}
FIELDS = ("agentId", "phase", "usage", "createdAt")


def _fmt(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _usd(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _tokens(usage: dict[str, Any], key: str) -> int:
    try:
        return max(0, int(usage.get(key) or 0))
    except (TypeError, ValueError):
        return 0


def run_saving(usage: dict[str, Any] | None) -> Decimal | None:
    """A run's saving from prompt caching; None when the run did not report its uncached cost."""
    usage = usage or {}
    uncached = _usd(usage.get("uncachedCostUSD"))
    return None if uncached is None else uncached - (_usd(usage.get("costUSD")) or Decimal(0))


@dataclass
class _Run:
    """One run's usage document, read leniently (missing or malformed fields count as zero)."""

    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_write: int
    cost: Decimal
    uncached_cost: Decimal  # its cost when it did not report one: no saving

    @classmethod
    def of(cls, usage: dict[str, Any]) -> _Run:
        cost = _usd(usage.get("costUSD")) or Decimal(0)
        saving = run_saving(usage)
        return cls(
            input_tokens=_tokens(usage, "inputTokens"),
            output_tokens=_tokens(usage, "outputTokens"),
            cache_read=_tokens(usage, "cacheReadTokens"),
            cache_write=_tokens(usage, "cacheWriteTokens"),
            cost=cost,
            uncached_cost=cost if saving is None else cost + saving,
        )


@dataclass
class _Acc:
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost: Decimal = field(default_factory=Decimal)
    uncached_cost: Decimal = field(default_factory=Decimal)

    def add(self, phase: str | None, run: _Run) -> None:
        self.executions += 1
        self.succeeded += phase == "Succeeded"
        self.failed += phase in ("Failed", "Cancelled")
        self.input_tokens += run.input_tokens
        self.output_tokens += run.output_tokens
        self.cache_read += run.cache_read
        self.cache_write += run.cache_write
        self.cost += run.cost
        self.uncached_cost += run.uncached_cost

    def totals(self) -> dict[str, Any]:
        """The fields every usage row shares (total, per agent, per bucket, per model)."""
        saving = self.uncached_cost - self.cost
        share = float(saving / self.uncached_cost * 100) if self.uncached_cost > 0 else 0.0
        return {
            "executions": self.executions,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read,
            "cacheWriteTokens": self.cache_write,
            "uncachedInputTokens": max(0, self.input_tokens - self.cache_read - self.cache_write),
            "costUSD": usd_string(self.cost),
            "uncachedCostUSD": usd_string(self.uncached_cost),
            "savingUSD": usd_string(saving),
            "savingPercent": round(share, 1),
        }


def _floor(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    if step >= dt.timedelta(days=1):
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


def window_start(window: str, now: dt.datetime) -> dt.datetime:
    span, step = WINDOWS[window]
    return _floor(now - span, step) + (step if step < dt.timedelta(days=1) else dt.timedelta())


async def usage(store: Store, user: User, window: str, now: dt.datetime | None = None) -> UsageOut:
    now = now or dt.datetime.now(dt.UTC)
    docs = await store.executions_since(user.id, _fmt(window_start(window, now)), FIELDS)
    return aggregate(docs, window, now)


def aggregate(docs: Iterable[dict[str, Any]], window: str, now: dt.datetime) -> UsageOut:
    """Sum run documents (already the user's, created since the window's start) per agent, model and
    bucket; every bucket of the window is listed, empty ones too."""
    step = WINDOWS[window][1]
    since = window_start(window, now)
    buckets: dict[str, _Acc] = {}
    t = since
    while t <= now:
        buckets[_fmt(t)] = _Acc()
        t += step
    agents: dict[str, _Acc] = {}
    models: dict[str, _Acc] = {}
    total = _Acc()
    for doc in docs:
        u = doc.get("usage") or {}
        run = _Run.of(u)
        created = dt.datetime.fromisoformat(str(doc.get("createdAt", "")).replace("Z", "+00:00"))
        for acc in (
            total,
            buckets.setdefault(_fmt(_floor(created, step)), _Acc()),
            agents.setdefault(str(doc.get("agentId", "")), _Acc()),
            models.setdefault(str(u.get("model") or "unknown"), _Acc()),
        ):
            acc.add(doc.get("phase"), run)
    return UsageOut(
        window=window,
        since=_fmt(since),
        **total.totals(),
        agents=[
            UsageAgent(agentId=k, succeeded=v.succeeded, failed=v.failed, **v.totals())
            for k, v in sorted(agents.items(), key=lambda kv: -kv[1].cost)
        ],
        buckets=[UsageBucket(start=k, **v.totals()) for k, v in sorted(buckets.items())],
        models=[
            UsageModel(model=k, **v.totals()) for k, v in sorted(models.items(), key=lambda kv: -kv[1].cost)
        ],
    )
