"""What every part of the store shares: the client, document ids, times, and the generic reads.

Collections are named by `agentry_common.records.Collection` (see docs/api.md). Times are ISO-8601
UTC strings with microseconds, so they sort as text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore import AsyncClient
from google.cloud.firestore_v1._helpers import decode_dict

from agentry_common.contention import KeyedLocks
from agentry_common.records import Collection

Doc = dict[str, Any]


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


async def read_document(client: AsyncClient, path: str) -> Doc | None:
    """One document's fields by Firestore's GetDocument call; None if it does not exist.

    Why not `DocumentReference.get()`: the client library reads one document by the streaming
    BatchGetDocuments call, then deep-copies what it decoded: more CPU per read (a stream's set-up in
    gRPC's asyncio layer) and more young-generation collections (`bench/api_latency.py`), on the read
    of every API request. A missing database
    also answers NotFound here: the readiness probe (`StoreBase.ping`) still reads the library's way.
    """
    name = f"{client._database_string}/documents/{path}"
    try:
        found = await client._firestore_api.get_document(
            request={"name": name}, metadata=client._rpc_metadata
        )
    except gexc.NotFound:
        return None
    data = decode_dict(found.fields, client)
    assert isinstance(data, dict)  # a document's fields decode to a map
    return data


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def event_doc_id(user_id: str, seq: int) -> str:
    return f"{key_id(user_id)[:16]}-{seq:012d}"


class StoreBase:
    def __init__(self, client: AsyncClient) -> None:
        self.db = client
        # Concurrent transactions on one user's document (its event sequence, its stream slots) take
        # turns in one replica: on the emulator 3 at once took 6 s and 5 hit its lock timeout.
        self.user_lock = KeyedLocks()

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
        return await read_document(self.db, f"{collection}/{doc_id}")

    async def _owned(self, collection: Collection, doc_id: str, user_id: str) -> Doc | None:
        """A document if it exists and belongs to the user; None otherwise (no way to tell which)."""
        doc = await self._get(collection, doc_id)
        if doc is None or doc.get("userId") != user_id or doc.get("deleted"):
            return None
        return doc
