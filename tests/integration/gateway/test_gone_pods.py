"""A gateway pod killed with calls in flight, on Google's Firestore emulator: its reservations (its
lease included) are counted at their estimate by the next transaction of another pod once its
heartbeat is silent, instead of staying held for an hour; a live pod's are never touched."""

from __future__ import annotations

import asyncio

import pytest
from google.cloud import firestore

from agentry_common.records import Collection
from agentry_gateway.budgets import Amount, BudgetPolicy, Calendar, Thresholds
from agentry_gateway.ledger import FirestoreLedger, Subjects

pytestmark = pytest.mark.integration

SUBJECTS = Subjects(user="user-1", agent="team-a/agent-a", execution="team-a/ex-1")
ESTIMATE, ACTUAL = Amount(tokens=100, messages=1), Amount(tokens=80, messages=1)
GONE_AFTER = 1.5


def ledger(project: str) -> FirestoreLedger:
    policy = BudgetPolicy.model_validate(
        {"name": "users", "scope": "user", "limits": [{"window": "day", "tokens": 1_000_000}]}
    )
    client = firestore.AsyncClient(project=project)
    return FirestoreLedger(
        client, [policy], Calendar("UTC", 300), Thresholds(), 86400, settle_delay=0.05, gone_after=GONE_AFTER
    )


def user_counter(project: str) -> dict[str, object]:
    client = firestore.Client(project=project)
    try:
        data = client.collection(Collection.BUDGET_COUNTERS).document("user:user-1").get().to_dict()
        assert data is not None
        return data
    finally:
        client.close()  # type: ignore[no-untyped-call]


def owners(counter: dict[str, object]) -> set[str]:
    reservations = counter["reservations"]
    assert isinstance(reservations, dict)
    return {str(r.get("by")) for r in reservations.values()}


async def reserve(pod: FirestoreLedger) -> str:
    rid, decision = await pod.reserve(
        SUBJECTS, estimate=ESTIMATE, priority=5, model="m", cheaper=lambda m: None
    )
    assert decision.allowed
    return rid


async def test_a_killed_pods_reservations_are_counted_by_the_next_transaction(firestore_project: str) -> None:
    killed, alive = ledger(firestore_project), ledger(firestore_project)
    await reserve(killed)  # a stream in flight when the pod dies: never settled
    assert owners(user_counter(firestore_project)) == {killed.pod}
    # Killed: its heartbeat stops; nothing of it is settled, flushed or closed.
    assert killed.heartbeat._task is not None
    killed.heartbeat._task.cancel()

    rid = await reserve(alive)  # a live pod's own call, the same user
    await alive.settle(SUBJECTS, rid, ACTUAL)
    await asyncio.sleep(GONE_AFTER / 2)
    assert killed.pod not in alive.heartbeat.gone  # not silent long enough yet: untouched
    assert killed.pod in owners(user_counter(firestore_project))
    for _ in range(100):  # the heartbeat runs on this loop: wait without blocking it
        if killed.pod in alive.heartbeat.gone:
            break
        await asyncio.sleep(0.1)
    assert killed.pod in alive.heartbeat.gone, "the killed pod not seen gone in 10 s"
    await alive.settle(SUBJECTS, await reserve(alive), ACTUAL)  # the next transaction on the counter
    await alive.close()

    counter = user_counter(firestore_project)
    assert counter["reservations"] == {}, counter["reservations"]  # nothing held, nothing leaked
    total = counter["total"]
    assert isinstance(total, list)
    # The killed call counted at its estimate (and its lease's spare with it), the live calls at their
    # actual usage: more than the two live calls alone, never less.
    assert total[0] >= 2 * ACTUAL.tokens + ESTIMATE.tokens and total[1] >= 3, total
    assert alive.stats.expired_reservations >= 1
