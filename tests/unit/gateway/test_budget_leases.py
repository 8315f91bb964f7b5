"""The pure parts of per-pod budget leases: how much spare a lease may hold, what a pod may admit from
it, and the counters a local decision sees."""

from __future__ import annotations

import pytest

from agentry_common.governance import Scope
from agentry_gateway.budgets import Amount, BudgetPolicy, Calendar, Counter, Subject, Thresholds
from agentry_gateway.ledger.leases import (
    LEASE_CALLS,
    LEASE_SECONDS,
    Lease,
    LeasePlan,
    flush_plan,
    spare_for,
    within,
)

pytestmark = pytest.mark.unit

CAL = Calendar("UTC", 300)
NOW = 1_800_000_000.0
POLICY = BudgetPolicy.model_validate(
    {"name": "users", "scope": "user", "limits": [{"window": "day", "tokens": 10_000}]}
)
ESTIMATE = Amount(tokens=100, messages=1)


def user(used: int) -> Subject:
    counter = Counter(Scope.USER, "u")
    if used:
        counter.settle("seed", Amount(tokens=used), NOW, CAL)
    return Subject(counter, [POLICY])


@pytest.mark.parametrize(
    ("used", "most", "spare"),
    [
        (0, 0, LEASE_CALLS),  # far from any zone: the full spare
        (0, 40, 40),  # many calls in flight: more
        (7_000, 0, 8),  # 70 %: 16 spare would cross 80 %, 8 does not
        (7_950, 0, 0),  # just below the throttle zone: one call at a time
        (9_000, 0, 0),  # inside it
    ],
)
def test_the_spare_keeps_every_limit_below_the_throttle_zone(used: int, most: int, spare: int) -> None:
    assert spare_for([user(used)], ESTIMATE, NOW, Thresholds(), CAL, most=most) == spare


def test_a_subject_without_limits_allows_the_full_spare() -> None:
    assert (
        spare_for([Subject(Counter(Scope.AGENT, "ns/a"), [])], ESTIMATE, NOW, Thresholds(), CAL)
        == LEASE_CALLS
    )


def test_a_lease_admits_what_fits_while_it_is_fresh() -> None:
    lease = Lease(("user:u",), "lease-1", held=Amount(tokens=300, messages=3), taken=NOW)
    assert lease.usable(NOW + 1, ESTIMATE)
    lease.inflight = {"a": ESTIMATE, "b": ESTIMATE}
    lease.consumed = Amount(tokens=80, messages=1)  # 280 of 300 serving: one more estimate does not fit
    assert not lease.usable(NOW + 1, ESTIMATE)
    lease.consumed = Amount()
    assert lease.usable(NOW + 1, ESTIMATE)
    assert not lease.usable(NOW + LEASE_SECONDS, ESTIMATE)  # stale: the counters are read again


def test_a_local_decision_sees_the_lease_as_what_it_serves() -> None:
    counter = Counter(Scope.USER, "u")
    counter.reserve("lease-1", Amount(tokens=1_700, messages=17), NOW)
    counter.reserve("other-pod", Amount(tokens=100, messages=1), NOW)
    lease = Lease(("user:u",), "lease-1", held=Amount(tokens=1_700, messages=17), taken=NOW)
    lease.snapshot = {"user:u": counter}
    lease.inflight = {"a": ESTIMATE}
    lease.consumed = Amount(tokens=80, messages=1)
    view = lease.view()["user:u"]
    assert view.reserved(NOW) == Amount(tokens=280, messages=3)  # other pod, in flight, settled
    assert counter.reserved(NOW) == Amount(tokens=1_800, messages=18)  # the snapshot is untouched


def test_a_call_admitted_while_a_transaction_rewrites_the_lease_fits_the_new_plan_too() -> None:
    lease = Lease(("user:u",), "lease-1", held=Amount(tokens=500, messages=5), taken=NOW)
    lease.pending = True
    lease.admit("a", ESTIMATE)  # before the transaction planned: its plan sees this call in flight
    assert lease.late == Amount()
    # The plan: the call in flight plus one spare estimate.
    lease.planned(LeasePlan("lease-1", Amount(), Amount(tokens=200, messages=2)))
    assert lease.room == ESTIMATE
    assert lease.usable(NOW + 1, ESTIMATE)
    lease.admit("b", ESTIMATE)
    # The reservation standing now (500) still has room, the one about to replace it (200) has none.
    assert within(lease.serving() + ESTIMATE, lease.held)
    assert not lease.usable(NOW + 1, ESTIMATE)
    lease.settled_transaction()  # committed or failed: the lease alone decides again
    assert lease.usable(NOW + 1, ESTIMATE)


def test_a_lease_is_half_used_when_what_it_serves_passes_half_its_reservation() -> None:
    lease = Lease(("user:u",), "lease-1", held=Amount(tokens=400, messages=4), taken=NOW)
    lease.admit("a", ESTIMATE)
    lease.admit("b", ESTIMATE)
    assert not lease.half_used()
    lease.admit("c", ESTIMATE)
    assert lease.half_used()
    assert lease.peak == 3


@pytest.mark.parametrize(
    ("inflight", "give_back", "keeps_spare"),
    [
        (False, False, True),  # a settlement's flush: the run's next call comes after its tools
        (False, True, False),  # expired idle: a quiet subject holds no reservation
        (True, True, True),  # calls in flight: more are coming
    ],
)
def test_a_flush_keeps_the_spare_unless_the_lease_expired_idle(
    inflight: bool, give_back: bool, keeps_spare: bool
) -> None:
    lease = Lease(("user:u",), "lease-1", held=Amount(tokens=1_700, messages=17), unit=ESTIMATE)
    lease.consumed = Amount(tokens=80, messages=1)
    if inflight:
        lease.inflight = {"a": ESTIMATE}
    counters = {"user:u": Counter(Scope.USER, "u")}
    counters["user:u"].reserve("lease-1", lease.held, NOW)
    plan = flush_plan(lease, counters, NOW, CAL, give_back)
    assert plan.flushed == Amount(tokens=80, messages=1)
    assert plan.held == (ESTIMATE if inflight else Amount())  # the spare is added by the transaction
    assert (plan.unit == ESTIMATE) is keeps_spare
    assert counters["user:u"].total == Amount(tokens=80, messages=1)
