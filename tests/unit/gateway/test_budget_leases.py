"""The pure parts of per-pod budget leases: how much spare a lease may hold, what a pod may admit from
it, and the counters a local decision sees."""

from __future__ import annotations

import pytest

from agentry_common.governance import Scope
from agentry_gateway.budgets import Amount, BudgetPolicy, Calendar, Counter, Subject, Thresholds
from agentry_gateway.ledger_leases import LEASE_CALLS, LEASE_SECONDS, Lease, spare_for

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
