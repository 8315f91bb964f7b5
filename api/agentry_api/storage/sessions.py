"""Server-side sessions, and the counts behind the per-user quotas (docs/api.md, "Quotas").

A session document (`sessions/<sha256 of the session id>`) is what a browser's cookie names: signing
out, revoking the API token that opened it, or deleting the user ends it. Quotas are counted here, in
Firestore, so they hold across replicas; open event streams are leases on the user's document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from google.cloud.firestore import DELETE_FIELD, AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.contention import transact
from agentry_common.records import Collection

from .base import Doc, StoreBase, now_iso

USERS, SESSIONS, AGENTS = Collection.USERS, Collection.SESSIONS, Collection.AGENTS
TOKENS = Collection.TOKENS
EXECUTIONS, CONVERSATIONS = Collection.EXECUTIONS, Collection.CONVERSATIONS


def session_key(session_id: str) -> str:
    """The document id of a session: a hash, so reading the store does not give a usable cookie."""
    return hashlib.sha256(f"session:{session_id}".encode()).hexdigest()


def iso_of(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SessionStore(StoreBase):
    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, session_id: str, doc: Doc) -> None:
        await self.db.collection(SESSIONS).document(session_key(session_id)).create(doc)

    async def session(self, session_id: str) -> Doc | None:
        return await self._get(SESSIONS, session_key(session_id))

    async def end_session(self, session_id: str) -> str | None:
        """End a session; whose it was (None: no such session)."""
        ref = self.db.collection(SESSIONS).document(session_key(session_id))
        snap = await ref.get()
        if not snap.exists:
            return None
        await ref.update({"revoked": True, "revokedAt": now_iso()})
        return str((snap.to_dict() or {}).get("userId", "")) or None

    async def touch_session(self, session_id: str) -> None:
        await self.db.collection(SESSIONS).document(session_key(session_id)).update({"lastUsedAt": now_iso()})

    async def end_sessions(self, user_id: str, token_id: str | None = None) -> int:
        """End the user's sessions (only those opened with API token `token_id` if given)."""
        q = self.db.collection(SESSIONS).where(filter=FieldFilter("userId", "==", user_id))
        if token_id is not None:
            q = q.where(filter=FieldFilter("tokenId", "==", token_id))
        ended = 0
        async for snap in q.stream():
            if not (snap.to_dict() or {}).get("revoked"):
                await snap.reference.update({"revoked": True, "revokedAt": now_iso()})
                ended += 1
        return ended

    async def delete_user(self, user_id: str) -> None:
        """Remove a user's document, end every session of theirs and revoke their API tokens, so no
        credential of theirs works from the next request on (an administrator's action; their
        agents and runs are not touched: delete those first)."""
        await self.end_sessions(user_id)
        tokens = self.db.collection(TOKENS).where(filter=FieldFilter("userId", "==", user_id))
        async for snap in tokens.stream():
            await snap.reference.update({"revoked": True, "revokedAt": now_iso()})
        await self.db.collection(USERS).document(user_id).delete()

    # -- quota counts ---------------------------------------------------------------------------

    async def _count(self, query: object) -> int:
        results = await query.count(alias="n").get()  # type: ignore[attr-defined]
        return int(results[0][0].value) if results and results[0] else 0

    async def count_agents(self, user_id: str) -> tuple[int, int]:
        """(agents, agents with a schedule) of the user, deleted ones not counted."""
        q = (
            self.db.collection(AGENTS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .select(["deleted", "spec.schedule"])
        )
        agents = scheduled = 0
        async for snap in q.stream():
            doc = snap.to_dict() or {}
            if doc.get("deleted"):
                continue
            agents += 1
            if (doc.get("spec") or {}).get("schedule"):
                scheduled += 1
        return agents, scheduled

    async def count_runs(self, user_id: str, phases: Sequence[str]) -> int:
        q = (
            self.db.collection(EXECUTIONS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("phase", "in", list(phases)))
        )
        return await self._count(q)

    async def count_runs_since(self, user_id: str, since: str) -> int:
        q = (
            self.db.collection(EXECUTIONS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("createdAt", ">=", since))
        )
        return await self._count(q)

    async def count_conversations(self, user_id: str) -> int:
        q = self.db.collection(CONVERSATIONS).where(filter=FieldFilter("userId", "==", user_id))
        return await self._count(q)

    async def count_guests_from(self, client: str, since: str) -> int:
        q = (
            self.db.collection(USERS)
            .where(filter=FieldFilter("client", "==", client))
            .where(filter=FieldFilter("createdAt", ">=", since))
        )
        return await self._count(q)

    # -- event stream leases -----------------------------------------------------------------------

    async def open_stream(self, user_id: str, lease: str, limit: int, ttl: float) -> bool:
        """Take a lease on one of the user's `limit` stream slots (False: all taken). `lease` is a
        field name (a letter, then letters and digits). Leases live in the user's document
        (`streams.<lease>: expiry`); expired ones (a replica that died) are dropped here, so a crash
        frees its slots after `ttl` seconds."""
        ref = self.db.collection(USERS).document(user_id)
        now = dt.datetime.now(dt.UTC)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> bool:
            snap = await ref.get(transaction=transaction)
            leases = dict(((snap.to_dict() or {}).get("streams") or {}) if snap.exists else {})
            live = {k: v for k, v in leases.items() if isinstance(v, str) and v > iso_of(now)}
            if len(live) >= limit:
                return False
            live[lease] = iso_of(now + dt.timedelta(seconds=ttl))
            if snap.exists:
                transaction.update(ref, {"streams": live})
            else:
                transaction.set(ref, {"streams": live})
            return True

        return await transact(self.db, txn, "the stream slots of a user", self.user_lock(user_id))

    async def renew_stream(self, user_id: str, lease: str, ttl: float) -> None:
        expiry = iso_of(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl))
        await self.db.collection(USERS).document(user_id).update({f"streams.{lease}": expiry})

    async def close_stream(self, user_id: str, lease: str) -> None:
        await self.db.collection(USERS).document(user_id).update({f"streams.{lease}": DELETE_FIELD})
