"""The event listener across its re-anchoring, on the emulator: with a window much shorter than the
test, every event written wakes its user exactly once — none lost between an old listener and its
replacement, none repeated by the replacement's first snapshot (which re-reads the overlap)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable

import pytest
from google.api_core.exceptions import Cancelled
from google.cloud import firestore

from agentry_api.services.feed import EventFeed
from agentry_api.storage import Store, new_client
from tests.fixtures.helpers import eventually

pytestmark = pytest.mark.integration

WINDOW = 0.4  # seconds: the test re-anchors a dozen times
EVENTS = 40


async def append(store: Store, i: int) -> None:
    """One user's event. The emulator now and then cancels a commit while a listener is replaced
    ("499 call already cancelled", seen in CI): written again under a dedupe key, so a commit that was
    applied before its cancel is not appended twice."""
    for attempt in range(3):
        try:
            await store.append_event(f"user-{i}", "note", {"i": i}, dedupe_key=f"feed-window-{i}")
            return
        except Cancelled:
            if attempt == 2:
                raise


def test_every_event_wakes_its_user_once_across_re_anchoring(firestore_project: str) -> None:
    woken: Counter[str] = Counter()
    lock = threading.Lock()

    def wake(users: Iterable[str]) -> None:
        with lock:
            woken.update(users)

    async def scenario() -> None:
        feed = EventFeed(lambda: firestore.Client(project=firestore_project), window=WINDOW)
        feed.start(asyncio.get_running_loop(), wake)
        store = Store(new_client(firestore_project, "(default)"))
        try:
            await asyncio.to_thread(eventually, lambda: feed.snapshots > 0, what="the listener running")
            for i in range(EVENTS):  # one user per event: each must be woken once
                await append(store, i)
                await asyncio.sleep(0.1)
            for _ in range(100):  # until every event arrived, or 10 s; then a few windows more
                if len(woken) == EVENTS:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(3 * WINDOW)
        finally:
            await asyncio.to_thread(feed.stop)
            await store.close()

    asyncio.run(scenario())
    assert sorted(woken) == sorted(f"user-{i}" for i in range(EVENTS))
    assert set(woken.values()) == {1}, {u: n for u, n in woken.items() if n != 1}
