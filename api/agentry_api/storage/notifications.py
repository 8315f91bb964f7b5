"""Notifications: subscriptions, the events to notify, and the outbox of deliveries.

An event's id and a delivery's id are derived from what they are about (`event_id`, `delivery_id`), so
writing one twice (a watcher replaying a change, two replicas) creates it once. A delivery is claimed
in a transaction that moves its `nextAt` a lease ahead: the due query then skips it, and if its sender
dies it is due again when the lease ends.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud.firestore import AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.contention import transact
from agentry_common.notifications import DeliveryState
from agentry_common.records import Collection

from .base import Doc, StoreBase, key_id

SUBSCRIPTIONS = Collection.NOTIFY_SUBSCRIPTIONS
EVENTS = Collection.NOTIFY_EVENTS
DELIVERIES = Collection.NOTIFY_DELIVERIES
ZONES = Collection.NOTIFY_ZONES


def event_id(key: str) -> str:
    return "ev-" + key_id(key)[:32]


def delivery_id(event: str, subscription: str) -> str:
    return "dl-" + key_id(f"{event}/{subscription}")[:32]


class NotificationStore(StoreBase):
    # -- subscriptions ---------------------------------------------------------------------------

    async def subscription(self, sub_id: str) -> Doc | None:
        return await self._get(SUBSCRIPTIONS, sub_id)

    async def put_subscription(self, doc: Doc) -> None:
        await self.db.collection(SUBSCRIPTIONS).document(doc["id"]).set(doc)

    async def delete_subscription(self, sub_id: str) -> None:
        await self.db.collection(SUBSCRIPTIONS).document(sub_id).delete()

    async def list_subscriptions(self, user_id: str) -> list[Doc]:
        q = self.db.collection(SUBSCRIPTIONS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: str(d.get("createdAt")))

    async def subscriptions_for(self, user_id: str) -> list[Doc]:
        """The user's own subscriptions and admins' subscriptions to everyone's events."""
        col = self.db.collection(SUBSCRIPTIONS)
        own = col.where(filter=FieldFilter("userId", "==", user_id))
        everyone = col.where(filter=FieldFilter("everyone", "==", True))
        found: dict[str, Doc] = {}
        for q in (own, everyone):
            async for d in q.stream():
                doc = d.to_dict() or {}
                found[str(doc.get("id"))] = doc
        return list(found.values())

    # -- budget zones (read from the gateway's call records) --------------------------------------

    async def calls_since(self, namespace: str, since: float, limit: int) -> list[Doc]:
        """The gateway's call records in `namespace` after `since` (epoch seconds), oldest first."""
        q = (
            self.db.collection(Collection.LLM_CALLS)
            .where(filter=FieldFilter("namespace", "==", namespace))
            .where(filter=FieldFilter("ts", ">", since))
            .order_by("ts")
            .limit(limit)
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def last_zone(self, user_id: str) -> str | None:
        doc = await self._get(ZONES, key_id(user_id))
        return str(doc["zone"]) if doc and doc.get("zone") else None

    async def set_zone(self, user_id: str, zone: str, at: float) -> None:
        await (
            self.db.collection(ZONES)
            .document(key_id(user_id))
            .set({"userId": user_id, "zone": zone, "ts": at})
        )

    # -- events ----------------------------------------------------------------------------------

    async def create_event(self, doc: Doc) -> bool:
        """Create once; False if it exists (a repeat of the same change)."""
        try:
            await self.db.collection(EVENTS).document(doc["id"]).create(doc)
        except gexc.AlreadyExists:
            return False
        return True

    async def mark_fanned_out(self, ev_id: str) -> None:
        await self.db.collection(EVENTS).document(ev_id).update({"fannedOut": True})

    async def unfanned_events(self, limit: int = 200) -> list[Doc]:
        q = self.db.collection(EVENTS).where(filter=FieldFilter("fannedOut", "==", False)).limit(limit)
        return [d.to_dict() or {} async for d in q.stream()]

    # -- deliveries ------------------------------------------------------------------------------

    async def create_delivery(self, doc: Doc) -> bool:
        try:
            await self.db.collection(DELIVERIES).document(doc["id"]).create(doc)
        except gexc.AlreadyExists:
            return False
        return True

    async def delivery(self, dl_id: str) -> Doc | None:
        return await self._get(DELIVERIES, dl_id)

    async def due_deliveries(self, now: str, limit: int) -> list[Doc]:
        q = (
            self.db.collection(DELIVERIES)
            .where(filter=FieldFilter("state", "==", DeliveryState.PENDING.value))
            .where(filter=FieldFilter("nextAt", "<=", now))
            .order_by("nextAt")
            .limit(limit)
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def claim_delivery(self, dl_id: str, now: str, lease_until: str, claim: str) -> Doc | None:
        """Take a due delivery for one attempt (until `lease_until`); None if it is not due any more."""
        ref = self.db.collection(DELIVERIES).document(dl_id)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            snap = await ref.get(transaction=transaction)
            doc = snap.to_dict() if snap.exists else None
            if doc is None or doc.get("state") != DeliveryState.PENDING or str(doc.get("nextAt")) > now:
                return None
            doc.update(nextAt=lease_until, claim=claim)
            transaction.update(ref, {"nextAt": lease_until, "claim": claim})
            return doc

        return await transact(self.db, txn, "a delivery")

    async def finish_attempt(self, dl_id: str, claim: str, fields: Doc) -> bool:
        """Record an attempt's outcome if the claim is still ours (False: the lease ended and another
        replica took it over; its outcome is the one kept)."""
        ref = self.db.collection(DELIVERIES).document(dl_id)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> bool:
            snap = await ref.get(transaction=transaction)
            doc = snap.to_dict() if snap.exists else None
            if doc is None or doc.get("claim") != claim:
                return False
            transaction.update(ref, {**fields, "claim": None})
            return True

        return await transact(self.db, txn, "a delivery")

    async def redeliver(self, dl_id: str, user_id: str, fields: Doc) -> Doc | None:
        """A dead (or delivered) delivery of the user's, pending again; None if not theirs."""
        ref = self.db.collection(DELIVERIES).document(dl_id)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            snap = await ref.get(transaction=transaction)
            doc = snap.to_dict() if snap.exists else None
            if doc is None or doc.get("userId") != user_id:
                return None
            if doc.get("state") != DeliveryState.PENDING:
                doc.update(fields)
                transaction.update(ref, fields)
            return doc

        return await transact(self.db, txn, "a delivery")

    async def list_deliveries(self, user_id: str, state: str | None, limit: int) -> list[Doc]:
        """Newest first."""
        q = self.db.collection(DELIVERIES).where(filter=FieldFilter("userId", "==", user_id))
        if state:
            q = q.where(filter=FieldFilter("state", "==", state))
        q = q.order_by("createdAt", direction="DESCENDING").limit(limit)
        return [d.to_dict() or {} async for d in q.stream()]

    async def prune_notifications(self, before: str, limit: int = 200) -> int:
        """Delete delivered and dead deliveries, and fanned-out events, last changed before `before`."""
        count = 0
        for state in (DeliveryState.DELIVERED, DeliveryState.DEAD):
            q = (
                self.db.collection(DELIVERIES)
                .where(filter=FieldFilter("state", "==", state.value))
                .where(filter=FieldFilter("updatedAt", "<", before))
                .limit(limit)
            )
            async for d in q.stream():
                await d.reference.delete()
                count += 1
        q = (
            self.db.collection(EVENTS)
            .where(filter=FieldFilter("fannedOut", "==", True))
            .where(filter=FieldFilter("occurredAt", "<", before))
            .limit(limit)
        )
        async for d in q.stream():
            await d.reference.delete()
            count += 1
        return count
