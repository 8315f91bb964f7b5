"""Users, API tokens and the designer's conversations."""

from __future__ import annotations

from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.records import Collection

from .base import Doc, StoreBase, now_iso

USERS, TOKENS, CONVERSATIONS = Collection.USERS, Collection.TOKENS, Collection.CONVERSATIONS


class UserStore(StoreBase):
    # -- users and tokens -----------------------------------------------------------------------

    async def ensure_user(
        self, user_id: str, kind: str, display: str | None = None, client: str | None = None
    ) -> Doc:
        """`client`: a hash of the address that created a guest (its guest-session rate)."""
        found = await self.get_user(user_id)  # on every bearer request
        if found is not None:
            return found
        doc = {"id": user_id, "kind": kind, "displayName": display or user_id, "createdAt": now_iso()}
        if client is not None:
            doc["client"] = client
        await self.db.collection(USERS).document(user_id).set(doc, merge=True)
        return doc

    async def get_user(self, user_id: str) -> Doc | None:
        return await self._get(USERS, user_id)

    async def create_token(self, token_hash: str, doc: Doc) -> None:
        await self.db.collection(TOKENS).document(token_hash).create(doc)

    async def token(self, token_hash: str) -> Doc | None:
        doc = await self._get(TOKENS, token_hash)
        return None if doc is None or doc.get("revoked") else doc

    async def touch_token(self, token_hash: str) -> None:
        await self.db.collection(TOKENS).document(token_hash).update({"lastUsedAt": now_iso()})

    async def list_tokens(self, user_id: str) -> list[Doc]:
        q = self.db.collection(TOKENS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted((d for d in docs if not d.get("revoked")), key=lambda d: d["createdAt"])

    async def token_by_id(self, user_id: str, public_id: str) -> Doc | None:
        q = (
            self.db.collection(TOKENS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("id", "==", public_id))
        )
        async for snap in q.stream():
            doc = snap.to_dict() or {}
            return None if doc.get("revoked") else doc
        return None

    async def revoke_token(self, user_id: str, public_id: str) -> bool:
        q = (
            self.db.collection(TOKENS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("id", "==", public_id))
        )
        found = False
        async for snap in q.stream():
            await snap.reference.update({"revoked": True, "revokedAt": now_iso()})
            found = True
        return found

    # -- conversations --------------------------------------------------------------------------

    async def conversation(self, user_id: str, conv_id: str) -> Doc | None:
        return await self._owned(CONVERSATIONS, conv_id, user_id)

    async def put_conversation(self, doc: Doc) -> None:
        await self.db.collection(CONVERSATIONS).document(doc["id"]).set(doc)

    async def list_conversations(self, user_id: str) -> list[Doc]:
        q = self.db.collection(CONVERSATIONS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: d.get("updatedAt", ""), reverse=True)
