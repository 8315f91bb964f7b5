"""Firestore I/O of admin-managed budgets: each change and its audit entry in one commit."""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore import AsyncClient, AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.contention import transact
from agentry_common.governance import (
    BUDGET_ADMIN,
    BUDGET_AUDIT,
    BUDGET_POLICIES,
    BUDGET_THROTTLES,
    GATEWAY_CONFIG_DOC,
)

from ...storage import now_iso
from ..errors import Conflict, NotFound

Doc = dict[str, Any]
AUDIT_LIMIT = 200


class BudgetAdminStore:
    def __init__(self, db: AsyncClient) -> None:
        self.db = db

    def _policy(self, name: str) -> Any:
        return self.db.collection(BUDGET_POLICIES).document(name)

    def _throttle(self, ident: str) -> Any:
        return self.db.collection(BUDGET_THROTTLES).document(ident)

    def _audit(self, entry: Doc) -> Any:
        return self.db.collection(BUDGET_AUDIT).document(str(entry["id"]))

    async def config(self) -> Doc:
        """What a gateway pod published of its governance file ({} before any did)."""
        snap = await self.db.collection(BUDGET_ADMIN).document(GATEWAY_CONFIG_DOC).get()
        return (snap.to_dict() or {}) if snap.exists else {}

    async def policies(self) -> list[Doc]:
        return [s.to_dict() or {} async for s in self.db.collection(BUDGET_POLICIES).stream()]

    async def create_policy(self, doc: Doc, audit: Doc) -> None:
        batch = self.db.batch()
        batch.create(self._policy(str(doc["name"])), doc)
        batch.set(self._audit(audit), audit)
        try:
            await batch.commit()
        except (gexc.AlreadyExists, gexc.Conflict) as exc:
            raise Conflict(f"a budget policy named {doc['name']!r} exists: edit it (PUT)") from exc

    async def change_policy(self, name: str, doc: Doc | None, audit: Doc) -> Doc:
        """Replace (doc) or delete (None) a policy; returns the document before. 404 if absent."""
        ref = self._policy(name)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc:
            snap = await ref.get(transaction=transaction)
            if not snap.exists:
                raise NotFound(f"no admin budget policy named {name!r}")
            before = snap.to_dict() or {}
            after = None
            if doc is None:
                transaction.delete(ref)
            else:  # who made it first stays
                after = {**doc, "createdBy": before.get("createdBy"), "createdAt": before.get("createdAt")}
                transaction.set(ref, after)
            transaction.set(self._audit(audit), {**audit, "before": before, "after": after})
            return before

        return await transact(self.db, txn, "a budget policy")

    async def throttles(self, active_only: bool = True) -> list[Doc]:
        query: Any = self.db.collection(BUDGET_THROTTLES)
        if active_only:
            query = query.where(filter=FieldFilter("active", "==", True))
        return [s.to_dict() or {} async for s in query.stream()]

    async def create_throttle(self, doc: Doc, audit: Doc) -> None:
        batch = self.db.batch()
        batch.create(self._throttle(str(doc["id"])), doc)
        batch.set(self._audit(audit), audit)
        await batch.commit()

    async def lift(self, ident: str, actor: str, audit: Doc) -> Doc:
        """Mark a throttle lifted (kept, for the record); 404 if unknown, 409 if lifted already."""
        ref = self._throttle(ident)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc:
            snap = await ref.get(transaction=transaction)
            if not snap.exists:
                raise NotFound(f"no throttle {ident!r}")
            before = snap.to_dict() or {}
            if not before.get("active"):
                raise Conflict(f"throttle {ident!r} was lifted at {before.get('liftedAt')}")
            after = {**before, "active": False, "liftedBy": actor, "liftedAt": now_iso()}
            transaction.set(ref, after)
            transaction.set(self._audit(audit), {**audit, "before": before, "after": after})
            return after

        return await transact(self.db, txn, "a throttle")

    async def audit(self, limit: int = AUDIT_LIMIT) -> list[Doc]:
        query = self.db.collection(BUDGET_AUDIT).order_by("id", direction="DESCENDING").limit(limit)
        return [s.to_dict() or {} async for s in query.stream()]
