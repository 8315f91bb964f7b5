"""The store's one-document read (GetDocument, `storage/base.py:read_document`) answers what the
client library's `DocumentReference.get()` answers, on the Firestore emulator."""

from __future__ import annotations

import datetime as dt

import pytest

from agentry_api.storage.base import read_document
from agentry_api.storage.store import Store, new_client

pytestmark = pytest.mark.integration

EVERY_KIND = {
    "text": "héllo",
    "number": 42,
    "ratio": 0.25,
    "flag": True,
    "nothing": None,
    "raw": b"\x00\x01",
    "when": dt.datetime(2026, 11, 26, 3, 4, 5, 123456, tzinfo=dt.UTC),
    "list": [1, "two", {"three": 3}],
    "nested": {"a": {"b": ["c"]}, "empty": {}},
}


async def test_a_document_reads_as_the_client_librarys_get_does(firestore_project: str) -> None:
    client = new_client(firestore_project)
    try:
        ref = client.collection("agents").document("a-1")
        await ref.set(EVERY_KIND)
        got = await read_document(client, "agents/a-1")
        assert got == (await ref.get()).to_dict()
        assert got is not None and got["when"] == EVERY_KIND["when"] and got["raw"] == b"\x00\x01"
    finally:
        await Store(client).close()


async def test_a_missing_document_or_id_reads_as_none(firestore_project: str) -> None:
    store = Store(new_client(firestore_project))
    try:
        await store.db.collection("agents").document("there").set({"userId": "u1"})
        assert await read_document(store.db, "agents/absent") is None
        assert await store.owned_agent("u1", "absent") is None
        assert await store.owned_agent("u1", "__reserved__") is None  # refused before any call
        assert await store.owned_agent("u2", "there") is None  # another user's
        assert await store.owned_agent("u1", "there") == {"userId": "u1"}
    finally:
        await store.close()
