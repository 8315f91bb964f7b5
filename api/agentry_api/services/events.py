"""The event stream: append to Firestore `events` (numbered per user), wake that user's SSE streams.

Events of this process wake its streams at once. Events written by another replica wake them
through that replica's datagram (`peers.py`), through the Firestore listener of `feed.py` when it
runs, and every `sse_poll_seconds` in any case (the safety net when both are down): a stream re-reads
Firestore whenever it is woken, so a wake-up is a hint, never the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from ..storage import Store
from .feed import EventFeed
from .peers import PeerWake

log = logging.getLogger("agentry.api.events")


class Subscription:
    """One stream's wake-up flag: set when its user may have a new event."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def arm(self) -> None:
        """Call before reading Firestore: a wake-up during the read is then not lost."""
        self._event.clear()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """Until woken or `seconds` passed: whether it was woken."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        return self._event.is_set()


class EventBus:
    def __init__(self, store: Store, feed: EventFeed | None = None, peers: PeerWake | None = None) -> None:
        self.store = store
        self.feed = feed
        self.peers = peers
        self._subs: dict[str, set[Subscription]] = {}
        # Notifications (services/notifications): told of every event before it is appended, so an
        # event the watcher repeats after a crash is notified (once: the notification's id is fixed).
        self.notify: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None

    async def publish(
        self, user_id: str, kind: str, data: dict[str, Any], dedupe_key: str | None = None
    ) -> dict[str, Any] | None:
        if self.notify is not None:
            await self.notify(user_id, kind, data)
        # One writer per user in this process: the store's transaction takes the user's lock.
        event = await self.store.append_event(user_id, kind, data, dedupe_key)
        if event is not None:
            self.wake([user_id])
            if self.peers is not None:
                self.peers.send([user_id])
            log.info(
                "event %s seq=%s user=%s correlation_id=%s",
                kind,
                event["seq"],
                user_id,
                data.get("correlationId"),
            )
        return event

    def wake(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            for sub in self._subs.get(user_id, ()):
                sub.wake()

    @contextlib.contextmanager
    def subscribe(self, user_id: str) -> Iterator[Subscription]:
        """A stream's subscription for as long as it is open; the first one starts the listener."""
        if self.feed is not None:
            self.feed.start(asyncio.get_running_loop(), self.wake)
        sub = Subscription()
        self._subs.setdefault(user_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(user_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[user_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
