"""Memory stores in Firestore: `agentMemories/{namespace}.{agentUid}` (the head: whose, `count`,
`updatedAt`) and its `entries` subcollection (one document per entry, id = the key).

A write or a delete is one transaction on the head and the entry: the count and the entries never
disagree, and two writers racing for a full store's last slot store one entry (Firestore serialises
them on the head document; `agentry_common.contention` retries the one that loses).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from agentry_common.contention import KeyedLocks, transact
from agentry_common.memory import MEMORY_COLLECTION, MemoryEntry

from .store import Full, Owner, now_rfc3339

ENTRIES: Final = "entries"
DELETE_BATCH: Final = 500  # Firestore's limit of writes per batch
FIELDS: Final = ("key", "value", "updatedAt", "updatedBy")


def _entry(data: dict[str, Any]) -> MemoryEntry:
    return MemoryEntry.model_validate({k: data[k] for k in FIELDS})


class FirestoreMemoryStore:
    """`client`: a google.cloud.firestore.AsyncClient (the ledger's)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._locks = KeyedLocks()  # this pod's writers of one store take turns (`transact`)

    def _head(self, owner: Owner) -> Any:
        return self.client.collection(MEMORY_COLLECTION).document(owner.doc_id)

    async def entries(self, owner: Owner) -> list[MemoryEntry]:
        query = self._head(owner).collection(ENTRIES).order_by("key")
        return [_entry(doc.to_dict() or {}) async for doc in query.stream()]

    async def get(self, owner: Owner, key: str) -> MemoryEntry | None:
        snap = await self._head(owner).collection(ENTRIES).document(key).get()
        return _entry(snap.to_dict() or {}) if snap.exists else None

    async def put(self, owner: Owner, key: str, value: str, by: str, limit: int) -> MemoryEntry:
        from google.cloud.firestore import AsyncTransaction, async_transactional

        head_ref = self._head(owner)
        entry_ref = head_ref.collection(ENTRIES).document(key)
        entry = MemoryEntry(key=key, value=value, updated_at=now_rfc3339(), updated_by=by)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> None:
            head = await head_ref.get(transaction=transaction)
            old = await entry_ref.get(transaction=transaction)
            count = int((head.to_dict() or {}).get("count", 0)) if head.exists else 0
            if not old.exists:
                if count >= limit:
                    raise Full(limit)
                count += 1
            transaction.set(entry_ref, entry.wire())
            transaction.set(head_ref, self._head_doc(owner, head, count))

        await transact(self.client, txn, "an Agent's memory", self._locks(owner.doc_id))
        return entry

    def _head_doc(self, owner: Owner, head: Any, count: int) -> dict[str, Any]:
        known = (head.to_dict() or {}) if head.exists else {}
        return {
            "namespace": owner.namespace,
            "agentUid": owner.agent_uid,
            "agent": owner.agent or known.get("agent", ""),
            "count": count,
            "updatedAt": dt.datetime.now(dt.UTC),
        }

    async def delete(self, owner: Owner, key: str) -> bool:
        from google.cloud.firestore import AsyncTransaction, async_transactional

        head_ref = self._head(owner)
        entry_ref = head_ref.collection(ENTRIES).document(key)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> bool:
            head = await head_ref.get(transaction=transaction)
            old = await entry_ref.get(transaction=transaction)
            if not old.exists:
                return False
            count = int((head.to_dict() or {}).get("count", 1)) if head.exists else 1
            transaction.delete(entry_ref)
            transaction.set(head_ref, self._head_doc(owner, head, max(0, count - 1)))
            return True

        return await transact(self.client, txn, "an Agent's memory", self._locks(owner.doc_id))

    async def stores(self) -> list[Owner]:
        out = []
        async for doc in self.client.collection(MEMORY_COLLECTION).stream():
            data = doc.to_dict() or {}
            if data.get("namespace") and data.get("agentUid"):
                out.append(Owner(str(data["namespace"]), str(data["agentUid"]), str(data.get("agent", ""))))
        return out

    async def drop(self, owners: list[Owner]) -> int:
        dropped = 0
        for owner in owners:
            head_ref = self._head(owner)
            refs = [ref async for ref in head_ref.collection(ENTRIES).list_documents(page_size=DELETE_BATCH)]
            for start in range(0, len(refs), DELETE_BATCH):
                batch = self.client.batch()
                for ref in refs[start : start + DELETE_BATCH]:
                    batch.delete(ref)
                await batch.commit()
            if (await head_ref.get()).exists or refs:
                dropped += 1
                await head_ref.delete()
        return dropped

    async def close(self) -> None:
        return None  # the client is the ledger's, closed with it
