"""Limit states (one limit of one subject, now) and the decisions made from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentry_common import pricing
from agentry_common.governance import Action, Scope, Zone
from agentry_common.pricing import nanos_to_usd

from .amounts import Metric
from .counters import Counter
from .policies import BudgetPolicy, Calendar, Window


def fmt(metric: Metric, value: int) -> str:
    if metric is Metric.COST:
        return f"${pricing.usd_string(nanos_to_usd(value))}"
    return f"{value:,}"


def when(ts: float | None) -> str:
    if ts is None:
        return "never on its own"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LimitState:
    """One limit of one subject, right now."""

    policy: str
    scope: Scope
    subject: str
    window: Window
    metric: Metric
    limit: int
    used: int  # settled
    reserved: int  # open reservations (calls in flight)

    @property
    def pct(self) -> float:
        return 100.0 * (self.used + self.reserved) / self.limit

    def describe(self) -> str:
        use = self.used + self.reserved
        return (
            f"{self.scope.value} {self.subject} {self.window.label} {self.metric.value} "
            f"at {self.pct:.1f} % ({fmt(self.metric, use)} of {fmt(self.metric, self.limit)}, "
            f"policy {self.policy})"
        )

    def to_wire(self) -> dict[str, Any]:
        def value(v: int) -> int | str:
            return pricing.usd_string(nanos_to_usd(v)) if self.metric is Metric.COST else v

        return {
            "policy": self.policy,
            "scope": self.scope.value,
            "subject": self.subject,
            "window": self.window.label,
            "metric": self.metric.value,
            "limit": value(self.limit),
            "used": value(self.used),
            "reserved": value(self.reserved),
            "percent": round(self.pct, 2),
        }


@dataclass
class Subject:
    """A counter and the policies that apply to it."""

    counter: Counter
    policies: Sequence[BudgetPolicy]

    def states(self, now: float, cal: Calendar) -> list[LimitState]:
        reserved = self.counter.reserved(now)
        out: list[LimitState] = []
        for policy in self.policies:
            for limit in policy.limits:
                window = limit.window_spec
                settled = self.counter.settled(window, now, cal)
                for metric, amount in limit.amounts():
                    out.append(
                        LimitState(
                            policy.name,
                            self.counter.scope,
                            self.counter.subject,
                            window,
                            metric,
                            amount,
                            settled.get(metric),
                            reserved.get(metric),
                        )
                    )
        return out


@dataclass(frozen=True)
class Decision:
    action: Action
    zone: Zone
    reason: str
    priority: int = 5
    requested_model: str | None = None
    model: str | None = None  # the model to use; the cheaper one when throttled
    until: float | None = None  # wait: when to try again (unix seconds)
    binding: LimitState | None = None  # the limit that decided (highest use, or the one exceeded)
    limits: tuple[LimitState, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.action in (Action.ALLOW, Action.THROTTLE)

    def to_wire(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "zone": self.zone.value,
            "reason": self.reason,
            "priority": self.priority,
            "requestedModel": self.requested_model,
            "model": self.model,
            "until": when(self.until) if self.until is not None else None,
            "budget": self.binding.to_wire() if self.binding is not None else None,
            "limits": [s.to_wire() for s in self.limits],
        }
