"""The event stream: append to Firestore `events` (numbered per user), wake local SSE streams.

A stream waits on the local notifier and also polls Firestore every `sse_poll_seconds`, so events
written by another replica reach it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..storage import Store

log = logging.getLogger("agentry.api.events")


class EventBus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.version = 0
        self._changed = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}

    async def publish(
        self, user_id: str, kind: str, data: dict[str, Any], dedupe_key: str | None = None
    ) -> dict[str, Any] | None:
        # One writer per user in this process: the per-user counter is a transaction hot spot.
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            event = await self.store.append_event(user_id, kind, data, dedupe_key)
        if len(self._locks) > 10000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        if event is not None:
            self.notify()
            log.info(
                "event %s seq=%s user=%s correlation_id=%s",
                kind,
                event["seq"],
                user_id,
                data.get("correlationId"),
            )
        return event

    def notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, since_version: int, seconds: float) -> None:
        """Return when something was published after `since_version`, or after `seconds`."""
        if self.version != since_version:
            return
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)
