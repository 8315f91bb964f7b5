"""`agentry_common.contention` against Google's Firestore emulator: writers in several replicas (each
its own client and locks) racing on one document all commit, and none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore import AsyncClient, AsyncTransaction, async_transactional

from agentry_common.contention import KeyedLocks, transact

pytestmark = pytest.mark.integration

REPLICAS = 3
WRITERS = 4  # per replica, at once


async def race(project: str) -> None:
    async def replica() -> None:
        client, locks = AsyncClient(project=project), KeyedLocks()
        ref = client.collection("counters").document("hot")

        @async_transactional
        async def bump(transaction: AsyncTransaction) -> None:
            snap = await ref.get(transaction=transaction)
            count = int((snap.to_dict() or {}).get("n", 0)) if snap.exists else 0
            transaction.set(ref, {"n": count + 1})

        await asyncio.gather(*(transact(client, bump, "a counter", locks("hot")) for _ in range(WRITERS)))

    await asyncio.gather(*(replica() for _ in range(REPLICAS)))


def test_racing_replicas_all_commit(firestore_project: str, firestore_db: firestore.Client) -> None:
    asyncio.run(race(firestore_project))
    got: dict[str, Any] = firestore_db.collection("counters").document("hot").get().to_dict() or {}
    assert got == {"n": REPLICAS * WRITERS}
