"""Budgets over time windows, throttling zones, reservations, and the decisions made from them.

Pure logic (no I/O) shared by the LLM gateway, which keeps the counters in Firestore, and the
operator, which asks for admission decisions. docs/governance.md explains the model; in short:

* A **policy** puts **limits** on a **subject** (a user, an agent, one Execution) over a **window**:
  rolling hours (`5h`), the calendar `day` or `month` (in one configured time zone), or the run's
  `total`. A limit counts `tokens` (input + output), `messages` (model calls) or `costUSD`.
* A **counter** (one document per subject) holds settled usage in time buckets and calendar keys,
  plus open **reservations**: before a call, its worst case (input estimate + `max_tokens` output)
  is reserved; after it, the reservation is replaced by the actual usage (reserve-then-settle).
* **Use** of a limit = settled + reserved. Its percentage picks the **zone**: below 80 % normal;
  80-95 % throttle (cheaper model; low priority waits); 95-100 % critical (only high priority);
  100 % exhausted. The limit with the highest percentage decides and is named in the explanation.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from . import pricing

NANOS_PER_USD: Final = 10**9
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


class Scope(StrEnum):
    USER = "user"
    AGENT = "agent"
    EXECUTION = "execution"


class Zone(StrEnum):
    NORMAL = "normal"
    THROTTLE = "throttle"
    CRITICAL = "critical"
    EXHAUSTED = "exhausted"


class Action(StrEnum):
    ALLOW = "allow"
    THROTTLE = "throttle"  # go ahead on the cheaper model
    WAIT = "wait"  # admission only: stay Pending until `until`
    REFUSE = "refuse"


# -- amounts ------------------------------------------------------------------------------------------


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


def usd_to_nanos(amount: Decimal) -> int:
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) / NANOS_PER_USD


def call_amount(model: str, input_tokens: int, output_tokens: int, messages: int = 1) -> Amount:
    """The usage of one call as counted by budgets (cost from the one pricing table, rounded up)."""
    return Amount(
        tokens=input_tokens + output_tokens,
        messages=messages,
        cost_nanos=usd_to_nanos(pricing.cost(model, input_tokens, output_tokens)),
    )


def estimate_input_tokens(request_bytes: int) -> int:
    return math.ceil(max(0, request_bytes) / BYTES_PER_TOKEN_ESTIMATE)


def estimate_call(model: str, request_bytes: int, max_tokens: int) -> Amount:
    """What a call may use at most (up to the input estimate): reserved before it starts."""
    return call_amount(model, estimate_input_tokens(request_bytes), max(0, max_tokens))


# -- windows and policies -----------------------------------------------------------------------------

_ROLLING = re.compile(r"^(\d+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Window:
    kind: Literal["rolling", "day", "month", "total"]
    seconds: int = 0  # rolling windows only

    @classmethod
    def parse(cls, text: str) -> Window:
        value = text.strip().lower()
        if value in ("day", "month", "total"):
            return cls(value)  # type: ignore[arg-type]
        match = _ROLLING.match(value)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"bad budget window {text!r}: use rolling '<n>m', '<n>h', '<n>d' (e.g. 5h), "
                "or 'day', 'month', 'total'"
            )
        return cls("rolling", int(match.group(1)) * _UNIT_SECONDS[match.group(2)])

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


class Limit(_Model):
    """Limits over one window; any of tokens, messages, costUSD (at least one)."""

    window: str
    tokens: int | None = Field(default=None, ge=1)
    messages: int | None = Field(default=None, ge=1)
    cost_usd: Decimal | None = Field(default=None, alias="costUSD", gt=0)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @model_validator(mode="after")
    def _some_metric(self) -> Limit:
        if self.tokens is None and self.messages is None and self.cost_usd is None:
            raise ValueError(f"limit over {self.window!r} sets none of tokens, messages, costUSD")
        return self

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


class BudgetPolicy(_Model):
    """Limits for every subject of `scope` whose key matches `match` (shell-style pattern).

    Subjects: a user key (the Agent's `agentry.dev/owner` label, or `ns:<namespace>`), an agent
    (`<namespace>/<name>`), an Execution (`<namespace>/<name>`; limits come from the run token).
    """

    name: str = Field(min_length=1, max_length=128)
    scope: Scope
    match: str = "*"
    limits: list[Limit] = Field(min_length=1)

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


# -- counters -----------------------------------------------------------------------------------------


@dataclass
class Reservation:
    amount: Amount
    expires: float
    created: float


@dataclass
class Counter:
    """The usage of one subject: what a Firestore document `budgetCounters/<id>` holds."""

    scope: Scope
    subject: str
    rolling: dict[int, Amount] = field(default_factory=dict)  # bucket start (unix s) -> settled
    days: dict[str, Amount] = field(default_factory=dict)
    months: dict[str, Amount] = field(default_factory=dict)
    total: Amount = field(default_factory=Amount)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    updated: float = 0.0
    ended: float | None = None  # an Execution's: when it ended (its run tokens admit no more calls)

    # The document form: plain maps and int lists (Firestore has no tuples or decimal type).
    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "v": 1,
            "scope": self.scope.value,
            "subject": self.subject,
            "rolling": {str(k): v.to_list() for k, v in self.rolling.items()},
            "days": {k: v.to_list() for k, v in self.days.items()},
            "months": {k: v.to_list() for k, v in self.months.items()},
            "total": self.total.to_list(),
            "reservations": {
                rid: {"a": r.amount.to_list(), "exp": r.expires, "at": r.created}
                for rid, r in self.reservations.items()
            },
            "updatedAt": self.updated,
        }
        if self.ended is not None:
            doc["endedAt"] = self.ended
        return doc

    @classmethod
    def from_doc(cls, scope: Scope, subject: str, doc: Mapping[str, Any] | None) -> Counter:
        if not doc:
            return cls(scope, subject)

        def amounts(key: str) -> dict[str, Amount]:
            raw = doc.get(key) or {}
            return {str(k): Amount.from_list(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

        reservations: dict[str, Reservation] = {}
        for rid, raw in (doc.get("reservations") or {}).items():
            if isinstance(raw, dict):
                reservations[str(rid)] = Reservation(
                    Amount.from_list(raw.get("a")), float(raw.get("exp", 0)), float(raw.get("at", 0))
                )
        return cls(
            scope,
            subject,
            rolling={int(k): v for k, v in amounts("rolling").items()},
            days=amounts("days"),
            months=amounts("months"),
            total=Amount.from_list(doc.get("total")),
            reservations=reservations,
            updated=float(doc.get("updatedAt") or 0.0),
            ended=float(doc["endedAt"]) if isinstance(doc.get("endedAt"), int | float) else None,
        )

    # -- reading -------------------------------------------------------------------------------------

    def settled(self, window: Window, now: float, cal: Calendar) -> Amount:
        if window.kind == "total":
            return self.total
        if window.kind == "day":
            return self.days.get(cal.day_key(now), Amount())
        if window.kind == "month":
            return self.months.get(cal.month_key(now), Amount())
        # A bucket [b, b + size) counts while it overlaps [now - window, now]: up to one bucket more
        # than the exact window, never less (conservative).
        oldest = now - window.seconds - cal.bucket_seconds
        out = Amount()
        for start, amount in self.rolling.items():
            if start > oldest:
                out = out + amount
        return out

    def reserved(self, now: float) -> Amount:
        out = Amount()
        for r in self.reservations.values():
            if r.expires > now:
                out = out + r.amount
        return out

    # -- writing -------------------------------------------------------------------------------------

    def _add(self, amount: Amount, now: float, cal: Calendar) -> None:
        bucket = cal.bucket(now)
        self.rolling[bucket] = self.rolling.get(bucket, Amount()) + amount
        day, month = cal.day_key(now), cal.month_key(now)
        self.days[day] = self.days.get(day, Amount()) + amount
        self.months[month] = self.months.get(month, Amount()) + amount
        self.total = self.total + amount

    def reserve(self, rid: str, amount: Amount, now: float, ttl: float = RESERVATION_TTL_SECONDS) -> None:
        self.reservations[rid] = Reservation(amount, now + ttl, now)
        self.updated = now

    def settle(self, rid: str, actual: Amount, now: float, cal: Calendar) -> bool:
        """Replace reservation `rid` by the actual usage; False if it was not open (already expired
        and counted at its estimate by `prune`, or never made): then the actual is added anyway."""
        found = self.reservations.pop(rid, None) is not None
        self._add(actual, now, cal)
        self.updated = now
        return found

    def prune(self, now: float, cal: Calendar, keep_seconds: int) -> list[str]:
        """Count expired reservations as spent (at their estimate) and drop old buckets and keys.

        Returns the ids of the expired reservations so the caller can log them.
        """
        expired = [rid for rid, r in self.reservations.items() if r.expires <= now]
        for rid in expired:
            self._add(self.reservations.pop(rid).amount, now, cal)
        oldest = now - keep_seconds - cal.bucket_seconds
        self.rolling = {b: a for b, a in self.rolling.items() if b > oldest}
        for keys, current in ((self.days, cal.day_key(now)), (self.months, cal.month_key(now))):
            for key in sorted(keys)[:-2]:
                if key != current:
                    del keys[key]
        return expired

    def frees_at(
        self, window: Window, metric: Metric, target: float, now: float, cal: Calendar
    ) -> float | None:
        """When use (settled + reserved) of `metric` falls below `target` if nothing new is spent;
        None if it never does on its own (a run's total) or only when reservations settle."""
        reserved = self.reserved(now).get(metric)
        used = self.settled(window, now, cal).get(metric)
        if used + reserved < target:
            return now
        if window.kind == "total":
            return None
        if window.kind == "day":
            return cal.next_day(now) if reserved < target else None
        if window.kind == "month":
            return cal.next_month(now) if reserved < target else None
        oldest = now - window.seconds - cal.bucket_seconds
        running = used + reserved
        for start in sorted(b for b in self.rolling if b > oldest):
            running -= self.rolling[start].get(metric)
            if running < target:
                return float(start + cal.bucket_seconds + window.seconds)
        return None


# -- limit states and decisions -----------------------------------------------------------------------


def _fmt(metric: Metric, value: int) -> str:
    if metric is Metric.COST:
        return f"${pricing.usd_string(nanos_to_usd(value))}"
    return f"{value:,}"


def _when(ts: float | None) -> str:
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
            f"at {self.pct:.1f} % ({_fmt(self.metric, use)} of {_fmt(self.metric, self.limit)}, "
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


def applicable(policies: Iterable[BudgetPolicy], scope: Scope, subject: str) -> list[BudgetPolicy]:
    return [p for p in policies if p.applies(scope, subject)]


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
            "until": _when(self.until) if self.until is not None else None,
            "budget": self.binding.to_wire() if self.binding is not None else None,
            "limits": [s.to_wire() for s in self.limits],
        }


CheaperModel = Callable[[str], str | None]


def _no_cheaper(model: str) -> str | None:
    return None


def _standing(states: Sequence[LimitState], th: Thresholds) -> tuple[LimitState | None, float, Zone, str]:
    """The most used limit, its use in percent, the zone that puts the subject in, and its words."""
    top = max(states, key=lambda s: s.pct, default=None)
    pct = top.pct if top is not None else 0.0
    return top, pct, th.zone(pct), top.describe() if top is not None else "no budget applies"


def _throttled(model: str | None, cheaper: CheaperModel) -> tuple[str | None, str]:
    if model is None:
        return None, "the cheaper model of the routing table will be used"
    substitute = cheaper(model)
    if substitute is None or substitute == model:
        return model, f"no cheaper model than {model} in the routing table: {model} is kept"
    return substitute, f"using the cheaper model {substitute} instead of {model}"


def _own(state: LimitState) -> bool:
    """A run's own limit (RUN_POLICY), as opposed to a shared budget policy."""
    return state.policy == RUN_POLICY and state.scope is Scope.EXECUTION


def decide_call(
    subjects: Sequence[Subject],
    *,
    priority: int,
    model: str,
    estimate: Amount,
    now: float,
    cal: Calendar,
    thresholds: Thresholds | None = None,
    cheaper: CheaperModel = _no_cheaper,
) -> Decision:
    """Mid-run: may this model call go ahead (and on which model)? Made with the reservation, under
    the counters' transaction. The call's estimate must fit under every shared limit (at 100 %
    nothing passes); a run's own limits (RUN_POLICY) only need the run to be below them, as the
    runtime counts them: its worst case (max_tokens) is often more than a small per-run budget,
    and a run's calls are one at a time, so it overspends by at most the call in flight; they are
    a hard cap, without zones. Zones (of the shared budgets):
    normal as asked; throttle: the cheaper model; critical: only high priority (cheaper model),
    others are refused; exhausted: refused. An Execution that has ended (its counter's `ended`) gets
    no more calls at all."""
    th = thresholds or Thresholds()
    states = tuple(s for subject in subjects for s in subject.states(now, cal))
    ended = next((s.counter for s in subjects if s.counter.ended is not None), None)
    if ended is not None:  # its run is over: a token still held (a late or stolen one) gets nothing
        return Decision(
            Action.REFUSE,
            _standing(tuple(s for s in states if not _own(s)), th)[2],
            f"{ended.scope.value} {ended.subject} ended at {_when(ended.ended)}; its run token "
            "admits no more calls",
            priority,
            model,
            limits=states,
        )
    for state in sorted(states, key=lambda s: -s.pct):
        use = state.used + state.reserved
        if use >= state.limit if _own(state) else use + estimate.get(state.metric) > state.limit:
            zone = th.zone(state.pct)
            return Decision(
                Action.REFUSE,
                zone,
                f"budget exhausted: {state.describe()}; this call may use up to "
                f"{_fmt(state.metric, estimate.get(state.metric))} more, "
                f"{_fmt(state.metric, max(0, state.limit - use))} is left",
                priority,
                model,
                None,
                None,
                state,
                states,
            )
    # A run's own limits are a hard cap (above), without zones.
    top, _, zone, where = _standing(tuple(s for s in states if not _own(s)), th)
    if zone is Zone.NORMAL:
        return Decision(
            Action.ALLOW, zone, f"normal zone: {where}", priority, model, model, None, top, states
        )
    klass = th.priority_class(priority)
    if zone is Zone.THROTTLE or (zone is Zone.CRITICAL and klass == "high"):
        chosen, note = _throttled(model, cheaper)
        band = f"{th.throttle:g}-{th.critical:g} %" if zone is Zone.THROTTLE else f">= {th.critical:g} %"
        return Decision(
            Action.THROTTLE,
            zone,
            f"{zone.value} zone ({band}): {where}; {note}",
            priority,
            model,
            chosen,
            None,
            top,
            states,
        )
    return Decision(
        Action.REFUSE,
        zone,
        f"{zone.value} zone (>= {th.critical:g} %): only priority >= {th.high_priority} work may continue, "
        f"this run has priority {priority}: {where}",
        priority,
        model,
        None,
        None,
        top,
        states,
    )


def decide_admission(
    subjects: Sequence[Subject],
    *,
    priority: int,
    model: str | None,
    now: float,
    cal: Calendar,
    thresholds: Thresholds | None = None,
    cheaper: CheaperModel = _no_cheaper,
    max_wait_seconds: float | None = None,
) -> Decision:
    """Before a run starts: allow, throttle (start on the cheaper model), wait (until the window
    frees) or refuse (it would not free within `max_wait_seconds`, or never on its own).

    Low priority starts below the throttle threshold, normal below the critical one, high below
    100 %. In between, work that may start does so on the cheaper model."""
    th = thresholds or Thresholds()
    states = tuple(s for subject in subjects for s in subject.states(now, cal))
    top, pct, zone, where = _standing(states, th)
    if zone is Zone.NORMAL:
        return Decision(
            Action.ALLOW, zone, f"normal zone: {where}", priority, model, model, None, top, states
        )
    below = th.admit_below(priority)
    klass = th.priority_class(priority)
    if pct < below:
        chosen, note = _throttled(model, cheaper)
        return Decision(
            Action.THROTTLE,
            zone,
            f"{zone.value} zone: {where}; {klass}-priority work (priority {priority}) starts; {note}",
            priority,
            model,
            chosen,
            None,
            top,
            states,
        )
    # Wait until every limit at or above the bar has fallen below it.
    by_subject = {(s.counter.scope, s.counter.subject): s.counter for s in subjects}
    until: float | None = now
    blocking = [s for s in states if s.pct >= below]
    for state in blocking:
        counter = by_subject[(state.scope, state.subject)]
        target = state.limit * below / 100.0
        frees = counter.frees_at(state.window, state.metric, target, now, cal)
        until = None if frees is None or until is None else max(until, frees)
    binding = max(blocking, key=lambda s: s.pct)
    why = (
        f"{zone.value} zone: {binding.describe()}; {klass}-priority work (priority {priority}) "
        f"starts below {below:g} %"
    )
    if until is None:
        return Decision(
            Action.REFUSE,
            zone,
            f"{why}, and this budget does not free up on its own",
            priority,
            model,
            None,
            None,
            binding,
            states,
        )
    if max_wait_seconds is not None and until - now > max_wait_seconds:
        return Decision(
            Action.REFUSE,
            zone,
            f"{why}; it frees at {_when(until)}, after the maximum wait of {max_wait_seconds:g} s",
            priority,
            model,
            None,
            until,
            binding,
            states,
        )
    return Decision(
        Action.WAIT,
        zone,
        f"{why}; waiting until {_when(until)}",
        priority,
        model,
        None,
        until,
        binding,
        states,
    )


def counter_id(scope: Scope, subject: str) -> str:
    """Firestore document id of a subject's counter (no '/', readable)."""
    safe = subject.replace("%", "%25").replace("/", "%2F")
    return f"{scope.value}:{safe}"
