"""Executions (the runs' mirror) and the per-user event stream.

Events are numbered per user by a counter on the user's document, in the same transaction as the
event itself: once event N+1 is visible, event N is too, which is what makes `Last-Event-ID` replay
exact. A dedupe key (optional) makes publishing idempotent across watcher restarts and replicas.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.cloud.firestore import AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.contention import transact
from agentry_common.records import Collection

from .base import Doc, StoreBase, event_doc_id, key_id, now_iso

USERS, EXECUTIONS = Collection.USERS, Collection.EXECUTIONS
EVENTS, EVENT_KEYS = Collection.EVENTS, Collection.EVENT_KEYS


class RunStore(StoreBase):
    # -- executions -----------------------------------------------------------------------------

    async def execution(self, name: str) -> Doc | None:
        if not name or "/" in name:
            return None
        return await self._get(EXECUTIONS, name)

    async def owned_execution(self, user_id: str, name: str) -> Doc | None:
        return await self._owned(EXECUTIONS, name, user_id)

    async def put_execution(self, doc: Doc, merge: bool = False) -> None:
        await self.db.collection(EXECUTIONS).document(doc["id"]).set(doc, merge=merge)

    async def delete_execution(self, name: str) -> None:
        """Drop the document of a run the cluster did not take (it never started)."""
        await self.db.collection(EXECUTIONS).document(name).delete()

    async def list_executions(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        phase: str | None = None,
        limit: int = 20,
        after: tuple[str, str] | None = None,
        since: str | None = None,
    ) -> list[Doc]:
        """Newest first; `after` is the (createdAt, id) of the last item of the previous page."""
        q = self.db.collection(EXECUTIONS).where(filter=FieldFilter("userId", "==", user_id))
        if agent_id:
            q = q.where(filter=FieldFilter("agentId", "==", agent_id))
        if phase:
            q = q.where(filter=FieldFilter("phase", "==", phase))
        if since:
            q = q.where(filter=FieldFilter("createdAt", ">=", since))
        q = q.order_by("createdAt", direction="DESCENDING").order_by("id", direction="DESCENDING")
        if after is not None:
            q = q.start_after({"createdAt": after[0], "id": after[1]})
        return [d.to_dict() or {} async for d in q.limit(limit).stream()]

    async def thread_members(self, user_id: str, root: str, limit: int) -> list[Doc]:
        """The user's follow-ups whose thread starts at run `root` (their `root` field)."""
        q = (
            self.db.collection(EXECUTIONS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("root", "==", root))
        )
        return [d.to_dict() or {} async for d in q.limit(limit).stream()]

    async def executions_since(self, user_id: str, since: str, fields: Sequence[str] = ()) -> list[Doc]:
        q = (
            self.db.collection(EXECUTIONS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("createdAt", ">=", since))
        )
        if fields:
            q = q.select(list(fields))
        return [d.to_dict() or {} async for d in q.stream()]

    # -- events ---------------------------------------------------------------------------------

    async def append_event(
        self, user_id: str, kind: str, data: Doc, dedupe_key: str | None = None
    ) -> Doc | None:
        """Append an event to the user's stream; None if `dedupe_key` was already published."""
        user_ref = self.db.collection(USERS).document(user_id)
        key_ref = self.db.collection(EVENT_KEYS).document(key_id(dedupe_key)) if dedupe_key else None
        events = self.db.collection(EVENTS)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            if key_ref is not None:
                key_snap = await key_ref.get(transaction=transaction)
                if key_snap.exists:
                    return None
            user_snap = await user_ref.get(transaction=transaction)
            seq = int((user_snap.to_dict() or {}).get("eventSeq", 0)) + 1 if user_snap.exists else 1
            event = {"userId": user_id, "seq": seq, "kind": kind, "data": data, "createdAt": now_iso()}
            transaction.set(events.document(event_doc_id(user_id, seq)), event)
            transaction.set(user_ref, {"eventSeq": seq}, merge=True)
            if key_ref is not None:
                transaction.set(key_ref, {"userId": user_id, "seq": seq, "createdAt": event["createdAt"]})
            return event

        return await transact(self.db, txn, "the event stream of a user", self.user_lock(user_id))

    async def last_event_seq(self, user_id: str) -> int:
        user = await self._get(USERS, user_id)
        return int((user or {}).get("eventSeq", 0))

    async def events_after(self, user_id: str, seq: int, limit: int = 500) -> list[Doc]:
        q = (
            self.db.collection(EVENTS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("seq", ">", seq))
            .order_by("seq")
            .limit(limit)
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def execution_events(self, user_id: str, execution: str, limit: int = 1000) -> list[Doc]:
        q = (
            self.db.collection(EVENTS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("data.execution", "==", execution))
            .limit(limit)
        )
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: int(d["seq"]))
