"""Per-pod budget leases on Google's Firestore emulator: most calls are admitted without a transaction,
and two replicas leasing from the same counters still never spend past the limit, count every call
exactly once and leave no reservation behind."""

from __future__ import annotations

import asyncio
import random

import pytest
from google.cloud import firestore

from agentry_common.records import Collection
from agentry_gateway.budgets import Amount, BudgetPolicy, Calendar, Thresholds
from agentry_gateway.ledger import FirestoreLedger, Subjects
from agentry_gateway.ledger.leases import LEASE_CALLS, LEASE_SECONDS

pytestmark = pytest.mark.integration

SUBJECTS = Subjects(user="user-1", agent="team-a/agent-a", execution="team-a/ex-1")
ESTIMATE, ACTUAL = Amount(tokens=100, messages=1), Amount(tokens=80, messages=1)


def ledger(project: str, limit: int) -> FirestoreLedger:
    policy = BudgetPolicy.model_validate(
        {"name": "users", "scope": "user", "limits": [{"window": "day", "tokens": limit}]}
    )
    client = firestore.AsyncClient(project=project)
    return FirestoreLedger(client, [policy], Calendar("UTC", 300), Thresholds(), 86400, settle_delay=0.05)


SETTLING: set[asyncio.Task[None]] = set()


async def call(pod: FirestoreLedger) -> bool:
    """One call as the gateway makes it: reserve, the model's time, then settle in the background."""
    rid, decision = await pod.reserve(
        SUBJECTS, estimate=ESTIMATE, priority=5, model="m", cheaper=lambda m: None
    )
    if not decision.allowed:
        return False
    await asyncio.sleep(random.uniform(0, 0.01))
    task = asyncio.create_task(pod.settle(SUBJECTS, rid, ACTUAL))
    SETTLING.add(task)
    task.add_done_callback(SETTLING.discard)
    return True


async def drain(*pods: FirestoreLedger) -> None:
    """Like the gateway's drain, then its shutdown."""
    await asyncio.gather(*list(SETTLING))
    for pod in pods:
        await pod.close()


def user_counter(project: str) -> dict[str, object]:
    client = firestore.Client(project=project)
    try:
        snap = client.collection(Collection.BUDGET_COUNTERS).document("user:user-1").get()
        data = snap.to_dict()
        assert data is not None
        return data
    finally:
        client.close()  # type: ignore[no-untyped-call]


async def test_a_runs_back_to_back_calls_take_few_transactions(firestore_project: str) -> None:
    pod = ledger(firestore_project, 1_000_000)
    try:
        assert all([await call(pod) for _ in range(60)])
    finally:
        await drain(pod)
    assert pod.stats.leased >= 40  # served from leases, not one transaction each
    assert pod.stats.transactions < 30  # taking leases and writing settlements
    counter = user_counter(firestore_project)
    assert counter["total"] == [60 * 80, 60, 0]  # every call counted once, at its actual usage
    assert counter["reservations"] == {}  # the lease given back on close


async def test_two_leasing_replicas_never_overspend(firestore_project: str) -> None:
    limit = 10_000  # 125 calls at their actual usage, 100 at their estimate
    pods = [ledger(firestore_project, limit), ledger(firestore_project, limit)]
    admitted = 0
    try:
        for wave in range(20):  # bursts of 16 concurrent calls, alternating pods, until refused
            results = await asyncio.gather(*(call(pods[(wave + i) % 2]) for i in range(16)))
            admitted += sum(results)
    finally:
        await drain(*pods)
    counter = user_counter(firestore_project)
    total = counter["total"]
    assert isinstance(total, list)
    assert total[0] == admitted * 80 and total[1] == admitted  # each answered call counted exactly once
    assert total[0] <= limit  # estimates cover actual use: no overspend across the replicas
    # Calls stop at the critical zone (95 %) for a normal-priority call; leases stop before the
    # throttle zone (80 %), so they never hold back more than that.
    assert admitted * 80 >= 0.8 * limit
    assert sum(p.stats.leased for p in pods) > 0  # leases were really used in this race
    assert counter["reservations"] == {}
    assert LEASE_CALLS * ESTIMATE.tokens < limit * 0.8  # the test exercises spare and no-spare paths


async def test_a_runs_next_call_after_its_tools_time_needs_no_transaction(firestore_project: str) -> None:
    pod = ledger(firestore_project, 1_000_000)
    try:
        assert await call(pod)
        await asyncio.gather(*list(SETTLING))  # settled and flushed: the lease keeps its spare
        await asyncio.sleep(3)  # the run's tools (longer than a settlement's delay)
        before, leased = pod.stats.transactions, pod.stats.leased
        assert await call(pod)
        assert pod.stats.leased == leased + 1  # admitted from the lease, without waiting
        assert pod.stats.transactions == before
    finally:
        await drain(pod)


async def test_an_idle_lease_gives_its_spare_back_when_it_expires(firestore_project: str) -> None:
    pod = ledger(firestore_project, 1_000_000)
    try:
        assert await call(pod)
        await asyncio.gather(*list(SETTLING))
        assert user_counter(firestore_project)["reservations"] != {}  # the spare, held for the run
        await asyncio.sleep(LEASE_SECONDS + 2)  # nothing else: the pod stays up
        counter = user_counter(firestore_project)
        assert counter["reservations"] == {}  # given back by the pod itself, not by its shutdown
        assert counter["total"] == [80, 1, 0]
    finally:
        await drain(pod)
