"""Approvals: one document per approval a run asks for, keyed by a hash of its id."""

from __future__ import annotations

from google.cloud.firestore import AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.contention import transact
from agentry_common.records import Collection

from .base import Doc, StoreBase, key_id

APPROVALS = Collection.APPROVALS


class ApprovalStore(StoreBase):
    async def approval(self, approval_id: str) -> Doc | None:
        return await self._get(APPROVALS, key_id(approval_id))

    async def owned_approval(self, user_id: str, approval_id: str) -> Doc | None:
        if not approval_id or len(approval_id) > 128:
            return None
        doc = await self.approval(approval_id)
        return doc if doc is not None and doc.get("userId") == user_id else None

    async def create_approval(self, doc: Doc) -> bool:
        """Create once; False if it exists already (idempotent across watcher restarts)."""
        ref = self.db.collection(APPROVALS).document(key_id(doc["id"]))

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> bool:
            snap = await ref.get(transaction=transaction)
            if snap.exists:
                return False
            transaction.set(ref, doc)
            return True

        return await transact(self.db, txn, "an approval")

    async def decide_approval(self, approval_id: str, fields: Doc) -> Doc | None:
        """Move a pending approval to decided; None if it was not pending (someone decided first)."""
        ref = self.db.collection(APPROVALS).document(key_id(approval_id))

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            snap = await ref.get(transaction=transaction)
            doc = snap.to_dict() if snap.exists else None
            if doc is None or doc.get("state") != "pending":
                return None
            doc.update(fields)
            transaction.set(ref, doc)
            return doc

        return await transact(self.db, txn, "an approval")

    async def update_approval(self, approval_id: str, fields: Doc) -> None:
        await self.db.collection(APPROVALS).document(key_id(approval_id)).update(fields)

    async def list_approvals(
        self, user_id: str, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Doc]:
        """Newest request first; `offset` skips that many (pagination)."""
        q = self.db.collection(APPROVALS).where(filter=FieldFilter("userId", "==", user_id))
        if state:
            q = q.where(filter=FieldFilter("state", "==", state))
        q = q.order_by("requestedAt", direction="DESCENDING")
        if offset:
            q = q.offset(offset)
        return [d.to_dict() or {} async for d in q.limit(limit).stream()]

    async def approvals_of(self, user_id: str, execution: str) -> list[Doc]:
        """Every approval of one execution, whatever its state."""
        q = (
            self.db.collection(APPROVALS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("execution", "==", execution))
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def approvals_due(self, field: str, now: str) -> list[Doc]:
        """Pending approvals whose `field` (noticeAt, escalateAt: cleared once acted on) is past."""
        q = (
            self.db.collection(APPROVALS)
            .where(filter=FieldFilter("state", "==", "pending"))
            .where(filter=FieldFilter(field, "<=", now))
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def expired_approvals(self, now: str) -> list[Doc]:
        q = (
            self.db.collection(APPROVALS)
            .where(filter=FieldFilter("state", "==", "pending"))
            .where(filter=FieldFilter("expiresAt", "<=", now))
        )
        return [d.to_dict() or {} async for d in q.stream()]
