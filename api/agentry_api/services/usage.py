"""Usage: tokens and cost per user and per agent over a time window, in buckets (hour or day)."""

from __future__ import annotations

import datetime as dt
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


def _cost(usage: dict[str, Any]) -> Decimal:
    try:
        return Decimal(str(usage.get("costUSD") or "0"))
    except InvalidOperation:
        return Decimal(0)


@dataclass
class _Acc:
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def add(self, phase: str | None, inp: int, out: int, cost: Decimal) -> None:
        self.executions += 1
        self.succeeded += phase == "Succeeded"
        self.failed += phase in ("Failed", "Cancelled")
        self.input_tokens += inp
        self.output_tokens += out
        self.cost += cost

    def totals(self) -> dict[str, Any]:
        """The fields every usage row shares (total, per agent, per bucket, per model)."""
        return {
            "executions": self.executions,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUSD": usd_string(self.cost),
        }


def _floor(value: dt.datetime, step: dt.timedelta) -> dt.datetime:
    if step >= dt.timedelta(days=1):
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


async def usage(store: Store, user: User, window: str, now: dt.datetime | None = None) -> UsageOut:
    span, step = WINDOWS[window]
    now = now or dt.datetime.now(dt.UTC)
    since = _floor(now - span, step) + (step if step < dt.timedelta(days=1) else dt.timedelta())
    docs = await store.executions_since(user.id, _fmt(since), FIELDS)
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
        inp, out, cost = int(u.get("inputTokens") or 0), int(u.get("outputTokens") or 0), _cost(u)
        created = dt.datetime.fromisoformat(str(doc.get("createdAt", "")).replace("Z", "+00:00"))
        phase = doc.get("phase")
        for acc in (
            total,
            buckets.setdefault(_fmt(_floor(created, step)), _Acc()),
            agents.setdefault(str(doc.get("agentId", "")), _Acc()),
            models.setdefault(str(u.get("model") or "unknown"), _Acc()),
        ):
            acc.add(phase, inp, out, cost)
    return UsageOut(
        window=window,
        since=_fmt(since),
        **total.totals(),
        agents=[
            UsageAgent(agentId=k, succeeded=v.succeeded, failed=v.failed, **v.totals())
            for k, v in sorted(agents.items(), key=lambda kv: -kv[1].cost)
        ],
        buckets=[UsageBucket(start=k, **v.totals()) for k, v in sorted(buckets.items())],
        models=_models(models),
    )


def _models(models: dict[str, _Acc]) -> list[UsageModel]:
    return [UsageModel(model=k, **v.totals()) for k, v in sorted(models.items(), key=lambda kv: -kv[1].cost)]
