"""Per-pod budget leases: most calls decided and reserved without a Firestore transaction.

A pod's transaction that admits a call for a set of counters (a run's user, agent, Execution, ...)
may reserve more than the call's estimate: a **lease**, one reservation `lease-<id>` in each of those
counters holding the call plus `spare` calls' worth of estimates. Until it is `LEASE_SECONDS` old,
the pod admits further calls of the same counters from it locally: each call is decided by the same
`decide_call`, against the counters as that transaction left them with the lease replaced by what it
serves (calls in flight at their estimate, settled ones at their usage), and only if its estimate
still fits in the lease. Settlements are kept locally and written by the next transaction on those
counters (a **flush**, through the combiner, at most `settle_delay` later), which also resizes the
lease: to what is still in flight, plus a new spare while calls keep coming.

Why the bound (docs/governance.md, "The bound") holds across replicas: every call is served from a
reservation that a transaction admitted and other pods see, so Σ settled + Σ reserved ≤ limit still
holds for the set of admitted calls, and a call's usage exceeds its share of the lease only by its
input-estimate error. The spare is granted only while every limit of those counters stays below the
throttle zone with it counted (`spare_for`); near a zone or a limit, calls are reserved one by one as
before. What a lease changes: other pods see the spare as reserved (they are the more cautious for
it), and a zone change or an Execution's end caused by another pod is seen here at most
`LEASE_SECONDS` late (this pod's own transactions invalidate its leases at once). A pod that dies
holding a lease leaves its reservation to be counted at its amount once the pod is seen gone
(pods.py: over-counted, never lost).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ..budgets import Amount, Calendar, Counter, Subject, Thresholds

# How long a pod admits calls from a lease without reading the counters again, and keeps an idle
# lease's spare: a run's calls are seconds apart (its tools run between them), and each call after a
# gap longer than this pays a transaction. The price: what other pods change is seen this late.
LEASE_SECONDS: Final = 10.0
# Spare estimates a lease may hold beyond the calls that take it (fewer near a zone boundary; more,
# up to twice the calls in flight, when one run's calls come concurrently).
LEASE_CALLS: Final = 16


def within(amount: Amount, bound: Amount) -> bool:
    return (
        amount.tokens <= bound.tokens
        and amount.messages <= bound.messages
        and amount.cost_nanos <= bound.cost_nanos
    )


def total(amounts: Iterable[Amount]) -> Amount:
    out = Amount()
    for amount in amounts:
        out = out + amount
    return out


@dataclass
class Lease:
    """One pod's lease on one set of counters (`ids`)."""

    ids: tuple[str, ...]
    rid: str
    held: Amount = field(default_factory=Amount)  # the lease's reservation in each counter
    snapshot: dict[str, Counter] = field(default_factory=dict)  # as the last transaction left them
    taken: float = float("-inf")  # when that transaction ran; -inf: not usable (stale)
    inflight: dict[str, Amount] = field(default_factory=dict)  # call id -> estimate
    consumed: Amount = field(default_factory=Amount)  # settled usage not yet written
    unit: Amount = field(default_factory=Amount)  # the estimate spares are counted in
    peak: int = 0  # the most calls it has served at once: its spare is sized for them
    # While a transaction of this pod rewrites the lease (a flush, or calls it admits): `room` is None
    # until the transaction has planned the new reservation, then the spare that plan holds beyond
    # what it saw in flight; `late` is what was admitted locally since (it must fit in `room`).
    pending: bool = False
    room: Amount | None = None
    late: Amount = field(default_factory=Amount)

    def serving(self) -> Amount:
        """What the lease stands for now: settled usage not written yet plus calls in flight."""
        return self.consumed + total(self.inflight.values())

    def usable(self, now: float, estimate: Amount) -> bool:
        """Whether a call of `estimate` may be admitted from the lease now. While a transaction
        rewrites it, a call admitted before that transaction planned is in the plan (it reads the
        calls in flight when it plans); one admitted after must fit in both the reservation standing
        now and the spare of the one about to replace it, so neither ever serves more than it holds."""
        if now - self.taken >= LEASE_SECONDS or not within(self.serving() + estimate, self.held):
            return False
        return self.room is None or within(self.late + estimate, self.room)

    def half_used(self) -> bool:
        return not within(scaled(self.serving(), 2), self.held)

    def admit(self, rid: str, estimate: Amount) -> None:
        self.inflight[rid] = estimate
        self.peak = max(self.peak, len(self.inflight))
        if self.room is not None:
            self.late = self.late + estimate

    def planned(self, plan: LeasePlan) -> None:
        """In a transaction, once it has planned this lease: what may still be admitted meanwhile."""
        self.room = plan.held - total(self.inflight.values()) - total(plan.calls.values())
        self.late = Amount()

    def settled_transaction(self) -> None:
        """The transaction rewriting the lease ended (committed or not)."""
        self.pending, self.room, self.late = False, None, Amount()

    def view(self) -> dict[str, Counter]:
        """The counters as if every call served from the lease had reserved on its own."""
        serving = self.serving()
        out: dict[str, Counter] = {}
        for cid, counter in self.snapshot.items():
            # Decisions only read counters: the copy shares the snapshot's usage, not its reservations.
            mine = dataclasses.replace(counter, reservations=dict(counter.reservations))
            mine.reservations.pop(self.rid, None)
            if serving != Amount():
                mine.reserve(self.rid, serving, self.taken)
            out[cid] = mine
        return out


@dataclass
class LeasePlan:
    """What one transaction does to a lease; applied to the Lease only once the transaction commits."""

    rid: str
    flushed: Amount  # consumed usage written by this transaction
    held: Amount  # the lease's reservation after it
    calls: dict[str, Amount] = field(default_factory=dict)  # calls it admitted into the lease
    unit: Amount | None = None  # set while the lease is in use: it then keeps a spare of these


def spare_for(
    subjects: list[Subject], estimate: Amount, now: float, th: Thresholds, cal: Calendar, most: int = 0
) -> int:
    """How many spare estimates a lease may hold: the most (from `most`, at least LEASE_CALLS, halving)
    that keeps every limit of these subjects below the throttle zone with them counted; 0 near one."""
    states = [s for subject in subjects for s in subject.states(now, cal)]
    if any(s.limit <= 0 for s in states):
        return 0
    spare = max(most, LEASE_CALLS)
    while spare > 0:
        if all(
            100.0 * (s.used + s.reserved + spare * estimate.get(s.metric)) / s.limit < th.throttle
            for s in states
        ):
            return spare
        spare //= 2
    return 0


def scaled(amount: Amount, times: int) -> Amount:
    return Amount(amount.tokens * times, amount.messages * times, amount.cost_nanos * times)


def flush_plan(
    lease: Lease, counters: dict[str, Counter], now: float, cal: Calendar, give_back: bool = False
) -> LeasePlan:
    """In a transaction: write the lease's settled usage and resize it: the calls in flight plus a
    new spare, or (`give_back`, once it is idle) no spare."""
    flushed, inflight = lease.consumed, total(lease.inflight.values())
    for cid in lease.ids:
        counter = counters[cid]
        counter.reservations.pop(lease.rid, None)
        if flushed != Amount():
            counter.settle(lease.rid, flushed, now, cal)
        if inflight != Amount():
            counter.reserve(lease.rid, inflight, now)
    # A run's next call follows its last one after its tools' time: the spare is kept for it until
    # the lease expires (`give_back`: then a quiet subject holds no reservation) or while calls are
    # still in flight.
    keep = lease.inflight or not give_back
    return LeasePlan(lease.rid, flushed, inflight, unit=lease.unit if keep else None)


def hold(plan: LeasePlan, ids: Iterable[str], counters: dict[str, Counter], now: float) -> None:
    """In a transaction: set the lease's reservation to what the plan holds (none when nothing)."""
    for cid in ids:
        counters[cid].reservations.pop(plan.rid, None)
        if plan.held != Amount():
            counters[cid].reserve(plan.rid, plan.held, now)


def commit(lease: Lease, plan: LeasePlan, counters: dict[str, Counter], now: float) -> bool:
    """After the transaction committed: the lease as it now stands. False when it holds nothing and
    serves nothing any more (the caller forgets it)."""
    lease.rid, lease.held = plan.rid, plan.held
    lease.unit = plan.unit or lease.unit
    lease.consumed = lease.consumed - plan.flushed
    lease.inflight.update(plan.calls)
    lease.peak = max(lease.peak, len(lease.inflight))
    lease.snapshot = {cid: copy.deepcopy(counters[cid]) for cid in lease.ids}
    lease.taken = now
    lease.settled_transaction()
    return plan.held != Amount() or lease.serving() != Amount()
