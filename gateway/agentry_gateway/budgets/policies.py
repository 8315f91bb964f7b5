"""Budget policies: limits over time windows, zone thresholds, and the calendar counters bucket by."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from agentry_common.governance import LimitSpec, PolicySpec, Scope, Zone, parse_window
from agentry_common.pricing import usd_to_nanos

from .amounts import Metric


@dataclass(frozen=True)
class Window:
    kind: Literal["rolling", "day", "month", "total"]
    seconds: int = 0  # rolling windows only

    @classmethod
    def parse(cls, text: str) -> Window:
        kind, seconds = parse_window(text)  # the one rule, shared with the API's validation
        return cls(kind, seconds)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        if self.kind != "rolling":
            return self.kind
        for unit, size in (("d", 86400), ("h", 3600)):
            if self.seconds % size == 0:
                return f"{self.seconds // size}{unit}"
        return f"{self.seconds // 60}m"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Limit(LimitSpec):
    """Limits over one window (validated by `LimitSpec`), with what the counters need of them."""

    @cached_property
    def window_spec(self) -> Window:
        return Window.parse(self.window)

    @cached_property
    def _amounts(self) -> tuple[tuple[Metric, int], ...]:
        out: list[tuple[Metric, int]] = []
        if self.tokens is not None:
            out.append((Metric.TOKENS, self.tokens))
        if self.messages is not None:
            out.append((Metric.MESSAGES, self.messages))
        if self.cost_usd is not None:
            out.append((Metric.COST, usd_to_nanos(self.cost_usd)))
        return tuple(out)

    def amounts(self) -> list[tuple[Metric, int]]:
        return list(self._amounts)


class BudgetPolicy(PolicySpec):
    """Limits for every subject of `scope` whose key matches `match` (shell-style pattern).

    Subjects: a user key (the Agent's `agentry.dev/owner` label, or `ns:<namespace>`), an agent
    (`<namespace>/<name>`), an Execution (`<namespace>/<name>`; limits come from the run token), a
    namespace (every call of it), the installation (subject `all`: every call).
    """

    limits: list[Limit] = Field(min_length=1, max_length=20)  # type: ignore[assignment]

    def applies(self, scope: Scope, subject: str) -> bool:
        return self.scope is scope and fnmatch.fnmatchcase(subject, self.match)


class Thresholds(_Model):
    """Zone boundaries in percent, and which priorities count as low or high (0..10)."""

    throttle: float = Field(default=80.0, gt=0, le=100)
    critical: float = Field(default=95.0, gt=0, le=100)
    high_priority: int = Field(default=8, ge=0, le=10)
    low_priority: int = Field(default=3, ge=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.throttle > self.critical:
            raise ValueError("the throttle threshold must not be above the critical one")
        if self.low_priority >= self.high_priority:
            raise ValueError("lowPriority must be below highPriority")
        return self

    def zone(self, pct: float) -> Zone:
        if pct >= 100.0:
            return Zone.EXHAUSTED
        if pct >= self.critical:
            return Zone.CRITICAL
        if pct >= self.throttle:
            return Zone.THROTTLE
        return Zone.NORMAL

    def priority_class(self, priority: int) -> str:
        if priority >= self.high_priority:
            return "high"
        if priority <= self.low_priority:
            return "low"
        return "normal"

    def admit_below(self, priority: int) -> float:
        """Use (in %) a subject must be below for work of this priority to start."""
        return {"low": self.throttle, "normal": self.critical, "high": 100.0}[self.priority_class(priority)]


RUN_POLICY = "run"  # the policy made of a run token's own limits (spec.budget of the Agent)


def run_policy(tokens: int | None, cost_usd: Decimal | None) -> list[BudgetPolicy]:
    """The per-run limits a run token carries, as a policy over the Execution's `total` window."""
    if tokens is None and cost_usd is None:
        return []
    return [
        BudgetPolicy(
            name=RUN_POLICY,
            scope=Scope.EXECUTION,
            limits=[Limit(window="total", tokens=tokens, cost_usd=cost_usd)],
        )
    ]


def applicable(policies: Iterable[BudgetPolicy], scope: Scope, subject: str) -> list[BudgetPolicy]:
    return [p for p in policies if p.applies(scope, subject)]


# -- calendar -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """How counters bucket time: rolling buckets of `bucket_seconds`, days and months in `tz`."""

    tz: str = "UTC"
    bucket_seconds: int = 300

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def local(self, now: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(now, self.zone)

    def bucket(self, now: float) -> int:
        return int(now // self.bucket_seconds) * self.bucket_seconds

    def day_key(self, now: float) -> str:
        return self.local(now).strftime("%Y-%m-%d")

    def month_key(self, now: float) -> str:
        return self.local(now).strftime("%Y-%m")

    def next_day(self, now: float) -> float:
        local = self.local(now)
        start = dt.datetime(local.year, local.month, local.day, tzinfo=self.zone) + dt.timedelta(days=1)
        return start.replace(tzinfo=self.zone).timestamp()

    def next_month(self, now: float) -> float:
        local = self.local(now)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        return dt.datetime(year, month, 1, tzinfo=self.zone).timestamp()
