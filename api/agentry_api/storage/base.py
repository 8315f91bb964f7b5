"""What every part of the store shares: the client, document ids, times, and the generic reads.

Collections are named by `agentry_common.records.Collection` (see docs/api.md). Times are ISO-8601
UTC strings with microseconds, so they sort as text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import weakref
from typing import Any

from google.cloud.firestore import AsyncClient

from agentry_common.records import Collection

Doc = dict[str, Any]

TXN_ATTEMPTS = 20


class Contended(Exception):
    """A transaction kept conflicting with concurrent writers; the caller may retry."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_client(project: str, database: str = "(default)") -> AsyncClient:
    return AsyncClient(project=project, database=database)


def valid_doc_id(doc_id: str) -> bool:
    """Whether Firestore accepts this as a document id: a path segment that is not `.`, `..` or
    reserved (`__*__`). Ids from URLs are checked first: an id Firestore refuses is one no document
    has (404), not a store failure (it answered INVALID_ARGUMENT, which read as 503)."""
    return (
        0 < len(doc_id) <= 400
        and "/" not in doc_id
        and doc_id not in (".", "..")
        and not (doc_id.startswith("__") and doc_id.endswith("__"))
    )


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def event_doc_id(user_id: str, seq: int) -> str:
    return f"{key_id(user_id)[:16]}-{seq:012d}"


class StoreBase:
    def __init__(self, client: AsyncClient) -> None:
        self.db = client
        # Firestore locks a document read in a transaction: concurrent transactions on one user's
        # document (its event sequence, its stream slots) wait on each other. On the emulator 3 at
        # once took 6 s and 5 hit its lock timeout, so a burst of a user's events held its event
        # stream past the request deadline. In one replica they take turns instead.
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def user_lock(self, user_id: str) -> asyncio.Lock:
        """The lock of this replica's transactions on the user's document (kept while in use)."""
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._user_locks[user_id] = lock
        return lock

    async def close(self) -> None:
        """Close the gRPC channel (the async client has no close of its own)."""
        api = getattr(self.db, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()

    async def ping(self) -> None:
        await self.db.collection(Collection.USERS).document("_ping").get()

    async def _get(self, collection: Collection, doc_id: str) -> Doc | None:
        if not valid_doc_id(doc_id):
            return None
        snap = await self.db.collection(collection).document(doc_id).get()
        return snap.to_dict() if snap.exists else None

    async def _owned(self, collection: Collection, doc_id: str, user_id: str) -> Doc | None:
        """A document if it exists and belongs to the user; None otherwise (no way to tell which)."""
        doc = await self._get(collection, doc_id)
        if doc is None or doc.get("userId") != user_id or doc.get("deleted"):
            return None
        return doc
