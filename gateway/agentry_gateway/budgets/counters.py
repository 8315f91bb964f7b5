"""Counters: the settled usage and open reservations of one subject (a `budgetCounters` document)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentry_common.governance import Scope

from .amounts import RESERVATION_TTL_SECONDS, Amount, Metric
from .policies import Calendar, Window


@dataclass
class Reservation:
    amount: Amount
    expires: float
    created: float
    owner: str = ""  # the gateway pod that made it (ledger/pods.py): its end settles it sooner than expiry


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
    # Not stored: the pod whose transaction holds this copy; reservations it makes are marked so.
    writer: str = field(default="", repr=False, compare=False)

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
                rid: {
                    "a": r.amount.to_list(),
                    "exp": r.expires,
                    "at": r.created,
                    **({"by": r.owner} if r.owner else {}),
                }
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
                    Amount.from_list(raw.get("a")),
                    float(raw.get("exp", 0)),
                    float(raw.get("at", 0)),
                    str(raw.get("by") or ""),
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
            ended=cls.ended_in(doc),
        )

    @staticmethod
    def ended_in(doc: Mapping[str, Any] | None) -> float | None:
        """A stored counter's `ended` (`endedAt`), read from its document alone."""
        ended = doc.get("endedAt") if doc else None
        return float(ended) if isinstance(ended, int | float) else None

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
        self.reservations[rid] = Reservation(amount, now + ttl, now, self.writer)
        self.updated = now

    def settle(self, rid: str, actual: Amount, now: float, cal: Calendar) -> bool:
        """Replace reservation `rid` by the actual usage; False if it was not open (already expired
        and counted at its estimate by `prune`, or never made): then the actual is added anyway."""
        found = self.reservations.pop(rid, None) is not None
        self._add(actual, now, cal)
        self.updated = now
        return found

    def prune(
        self, now: float, cal: Calendar, keep_seconds: int, gone: frozenset[str] = frozenset()
    ) -> list[str]:
        """Count expired reservations, and those of gateway pods that are `gone`, as spent (at their
        estimate: the provider may have charged the call) and drop old buckets and keys.

        Returns the ids of the expired reservations so the caller can log them.
        """
        expired = [rid for rid, r in self.reservations.items() if r.expires <= now or r.owner in gone]
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


def counter_id(scope: Scope, subject: str) -> str:
    """Firestore document id of a subject's counter (no '/', readable)."""
    safe = subject.replace("%", "%25").replace("/", "%2F")
    return f"{scope.value}:{safe}"


def scope_subject(cid: str) -> tuple[Scope, str]:
    """A counter id's scope and subject (counter_id's inverse)."""
    scope, _, safe = cid.partition(":")
    return Scope(scope), safe.replace("%2F", "/").replace("%25", "%")
