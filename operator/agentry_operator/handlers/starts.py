"""Runs waiting to start: their keys in a queue, served by at most `limit` workers.

An Execution's watch event hands its key here and returns, so kopf's worker for that object ends
instead of waiting for a slot. With 10,000 runs taken on at once, ~6,400 kopf workers waited on a
semaphore here, each holding its handler's whole context (body wrappers, patches, an object logger,
a dozen coroutines): a census of the operator's objects during `bench/operator_scale.py` counted 82,000
coroutines and 170,000 dicts at 376 MiB. A queued run costs its key and its logger.

A key is queued once: an event of a run already queued or starting adds nothing, since the start
reads the run's cached body as it is when its turn comes. Oldest first. Workers exist only while
there is work; each starts in an empty context, so none keeps the kopf handler that created it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import Key, Logger

    Start = Callable[[Key, Logger], Awaitable[None]]

START_LIMIT = 256  # runs starting at once (bench/operator_scale.py: the take-on time against peak RSS)


class Starts:
    def __init__(self, limit: int = START_LIMIT) -> None:
        self.limit = limit
        self._queued: dict[Key, Logger] = {}  # insertion order: oldest first
        self._starting: set[Key] = set()
        self._workers: set[asyncio.Task[None]] = set()

    def add(self, key: Key, logger: Logger, start: Start) -> None:
        """Queue a run's start (nothing if it is queued or starting already)."""
        if key in self._queued or key in self._starting:
            return
        self._queued[key] = logger
        if len(self._workers) < self.limit:
            task = asyncio.create_task(self._work(start), context=contextvars.Context())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    @property
    def waiting(self) -> int:
        return len(self._queued)

    async def _work(self, start: Start) -> None:
        while self._queued:
            key = next(iter(self._queued))
            logger = self._queued.pop(key)
            self._starting.add(key)
            try:
                await start(key, logger)
            except Exception:  # the start handles what it expects; this worker goes on regardless
                logger.exception("starting execution %s/%s failed", *key)
            finally:
                self._starting.discard(key)

    def cancel(self) -> None:
        for task in list(self._workers):
            task.cancel()
