"""A burst of one user's events and stream opens on the Firestore emulator: each is a transaction on
the user's document, and concurrent ones lock each other out (5 at once hit the emulator's lock
timeout). In one replica they take turns: every one succeeds, the sequence has no gap or double."""

from __future__ import annotations

import asyncio

import pytest

from agentry_api.storage.store import Store, new_client

pytestmark = pytest.mark.integration


async def test_a_burst_of_one_users_events_and_stream_opens_all_succeed(firestore_project: str) -> None:
    store = Store(new_client(firestore_project))
    try:
        await store.ensure_user("u1", "guest")
        appends = [store.append_event("u1", "execution", {"n": n}) for n in range(12)]
        opens = [store.open_stream("u1", f"s{n}", 10, 60) for n in range(4)]
        results = await asyncio.gather(*appends, *opens)
        events, opened = results[:12], results[12:]
        assert sorted(int(e["seq"]) for e in events if e) == list(range(1, 13))
        assert opened == [True] * 4
        assert [int(e["seq"]) for e in await store.events_after("u1", 0)] == list(range(1, 13))
    finally:
        await store.close()
