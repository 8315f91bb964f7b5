"""Trigger deliveries: one document per delivery (accepted, duplicate or refused).

An accepted delivery's document is its claim: its id is derived from the trigger's uid and the
delivery's key, and it is created only if absent, so of two concurrent copies one wins and the other
finds it. Each trigger keeps its last KEEP deliveries (older ones are pruned as new ones arrive).
"""

from __future__ import annotations

import uuid

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.records import Collection

from .base import Doc, StoreBase, key_id

DELIVERIES = Collection.TRIGGER_DELIVERIES
KEEP = 200


class TriggerStore(StoreBase):
    async def claim_trigger_delivery(self, doc: Doc) -> Doc | None:
        """Create the accepted delivery `doc` (its id from `claim_id`); None when created, else the
        document that claimed the same delivery first."""
        ref = self.db.collection(DELIVERIES).document(doc["id"])
        try:
            await ref.create(doc)
        except gexc.Conflict:  # AlreadyExists
            found = await self._get(DELIVERIES, doc["id"])
            return found if found is not None else doc
        return None

    async def release_trigger_delivery(self, claim: str) -> None:
        """Forget a claim whose run could not be started, so that the sender's retry may start it."""
        await self.db.collection(DELIVERIES).document(claim).delete()

    async def record_trigger_delivery(self, doc: Doc) -> None:
        """A delivery that claims nothing (refused, duplicate): a document of its own."""
        await self.db.collection(DELIVERIES).document(uuid.uuid4().hex).set(doc)

    async def trigger_deliveries(self, trigger_uid: str, limit: int) -> list[Doc]:
        """The trigger's deliveries, newest first (one equality filter: no composite index needed;
        a trigger keeps at most about KEEP)."""
        query = self.db.collection(DELIVERIES).where(filter=FieldFilter("triggerUid", "==", trigger_uid))
        docs = [d.to_dict() or {} async for d in query.stream()]
        docs.sort(key=lambda d: str(d.get("receivedAt", "")), reverse=True)
        return docs[:limit]

    async def prune_trigger_deliveries(self, trigger_uid: str) -> int:
        """Delete all but the trigger's newest KEEP deliveries; returns how many went."""
        query = self.db.collection(DELIVERIES).where(filter=FieldFilter("triggerUid", "==", trigger_uid))
        snaps = [s async for s in query.stream()]
        snaps.sort(key=lambda s: str((s.to_dict() or {}).get("receivedAt", "")), reverse=True)
        for snap in snaps[KEEP:]:
            await snap.reference.delete()
        return max(0, len(snaps) - KEEP)


def claim_id(trigger_uid: str, delivery_key: str) -> str:
    return key_id(f"{trigger_uid}/{delivery_key}")
