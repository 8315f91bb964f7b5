"""The Lease rules of leader election (pure): who may take the Lease, and what a holder writes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from agentry_operator.controller.leader import LeaderElector, LeadershipLost, Timing, held_spec, may_take

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 11, 24, 7, 0, 0, tzinfo=dt.UTC)


def lease(holder: str | None, renewed_ago: float, seconds: int = 10, transitions: int = 0) -> LeaseSpec:
    return LeaseSpec(
        holderIdentity=holder,
        leaseDurationSeconds=seconds,
        renewTime=NOW - dt.timedelta(seconds=renewed_ago),
        acquireTime=NOW - dt.timedelta(seconds=100),
        leaseTransitions=transitions,
    )


def test_a_free_expired_or_own_lease_may_be_taken_a_live_foreign_one_not() -> None:
    assert may_take(None, "me", NOW)
    assert may_take(lease(None, 1), "me", NOW)  # released
    assert may_take(lease("me", 1), "me", NOW)  # a renewal
    assert may_take(lease("other", 10.5), "me", NOW)  # expired
    assert not may_take(lease("other", 9.5), "me", NOW)
    naive = LeaseSpec(holderIdentity="other", leaseDurationSeconds=10, renewTime=NOW.replace(tzinfo=None))
    assert not may_take(naive, "me", NOW)  # a time without zone is UTC


def test_taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    taken = held_spec(lease("other", 30, transitions=2), "me", 10, NOW)
    assert (taken.holderIdentity, taken.leaseTransitions, taken.acquireTime) == ("me", 3, NOW)
    renewed = held_spec(lease("me", 2, transitions=3), "me", 10, NOW)
    assert renewed.leaseTransitions == 3 and renewed.renewTime == NOW
    assert renewed.acquireTime == NOW - dt.timedelta(seconds=100)
    first = held_spec(None, "me", 10, NOW)
    assert (first.leaseTransitions, first.leaseDurationSeconds) == (0, 10)


class SlowApiServer:
    """A Lease API whose every answer takes `latency` seconds (a loaded machine)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.lease: Lease | None = None

    async def get(self, _res: object, _name: str, namespace: str) -> Lease:
        await asyncio.sleep(self.latency)
        assert self.lease is not None
        return self.lease

    async def replace(self, lease: Lease) -> Lease:
        await asyncio.sleep(self.latency)
        self.lease = lease
        return lease


def holding_for(latency: float, seconds: float) -> str:
    """Hold the Lease for `seconds` against answers `latency` slow; how the hold ended."""
    server = SlowApiServer(latency)
    server.lease = Lease(metadata=ObjectMeta(name="l", namespace="ns"), spec=held_spec(None, "me", 1, NOW))
    timing = Timing(lease_seconds=4, renew_seconds=0.1, renew_deadline_seconds=3, retry_seconds=0.1)
    elector = LeaderElector(server, "ns", "l", "me", timing)  # type: ignore[arg-type]

    async def go() -> str:
        try:
            await asyncio.wait_for(elector.hold(), seconds)
        except TimeoutError:
            return "held"
        except LeadershipLost:
            return "lost"
        return "returned"

    return asyncio.run(go())


def test_slow_renewals_within_the_deadline_keep_the_lease_and_slower_ones_lose_it() -> None:
    # Each attempt (a read and a write) takes 0.5 s, five times the renew period: still renewed.
    assert holding_for(0.25, 2.0) == "held"
    # Each attempt takes longer than the whole deadline: the holder stops before the Lease expires.
    assert holding_for(2.0, 8.0) == "lost"
