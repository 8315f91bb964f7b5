"""The work queue of the runs' controller: a key goes in, `reconcile(key, again)` runs, and a key may
come back after a delay (requeue-after) or, when the reconcile raised, after a back-off.

- A key is queued once. An `add` of a key that is queued adds nothing (the reconcile reads the object
  as it is when its turn comes); an `add` of a key being reconciled queues it once more after that
  reconcile ends (it may have read the object before the change). Oldest first.
- At most `limit` keys are reconciled at once. Workers exist only while there is work, each in an
  empty context (none keeps the watch event's task that queued the first key).
- `again` tells the reconcile that the key came back by a timer (a retry, a wait that ended), not by
  a change of its object: it then reads what it cannot see in its cache (a running Execution's Job).
- Back-off: `failed` counts failures in a row and queues the key after `backoff(failures)`
  (5 s doubling up to 5 minutes); `succeeded` resets the count. A reconcile that raises fails.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

log = logging.getLogger("agentry.operator.queue")

LIMIT: Final = 256  # keys reconciled at once (bench/operator_scale.py: the take-on time against peak RSS)
RETRY_SECONDS: Final = 5.0
MAX_RETRY_SECONDS: Final = 300.0


def backoff(failures: int) -> float:
    """Seconds before retry number `failures` (1, 2, ...): 5 s doubling up to 5 minutes."""
    return min(RETRY_SECONDS * 2.0 ** max(failures - 1, 0), MAX_RETRY_SECONDS)


class Queue(Generic[K]):
    """Keys waiting for `reconcile` (bound by `run`; until then keys only wait)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._reconcile: Callable[[K, bool], Awaitable[None]] | None = None
        self._queued: dict[K, bool] = {}  # key -> again; insertion order: oldest first
        self._active: set[K] = set()
        self._dirty: dict[K, bool] = {}  # added while being reconciled
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._workers: set[asyncio.Task[None]] = set()

    def run(self, reconcile: Callable[[K, bool], Awaitable[None]]) -> None:
        """Start reconciling with `reconcile` (what was queued before starts now)."""
        self._reconcile = reconcile
        self._spawn()

    def add(self, key: K, again: bool = False) -> None:
        """Queue `key` now (see the module for a key queued or being reconciled)."""
        if key in self._active:
            self._dirty[key] = self._dirty.get(key, False) or again
            return
        self._queued[key] = self._queued.get(key, False) or again
        self._spawn()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` (again) in `delay` seconds; an earlier timer of the key stays, a later one goes."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0)
        if (timer := self._timers.get(key)) is not None:
            if timer[0] <= when:
                return
            timer[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._due, key))

    def failed(self, key: K) -> float:
        """One more failure in a row: the key comes back after the back-off, which is returned."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = backoff(failures)
        self.add_after(key, delay)
        return delay

    def succeeded(self, key: K) -> None:
        self._failures.pop(key, None)

    def forget(self, key: K) -> None:
        """The object is gone: no timer, no back-off, nothing queued."""
        if (timer := self._timers.pop(key, None)) is not None:
            timer[1].cancel()
        self._failures.pop(key, None)
        self._queued.pop(key, None)
        self._dirty.pop(key, None)

    @property
    def waiting(self) -> int:
        return len(self._queued)

    def scheduled(self, key: K) -> float | None:
        """Seconds until `key` comes back by a timer (None: no timer)."""
        timer = self._timers.get(key)
        return None if timer is None else timer[0] - asyncio.get_running_loop().time()

    def _due(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key, again=True)

    def _spawn(self) -> None:
        if self._reconcile is None or not self._queued or len(self._workers) >= self.limit:
            return
        task = asyncio.create_task(self._work(self._reconcile), context=contextvars.Context())
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self, reconcile: Callable[[K, bool], Awaitable[None]]) -> None:
        while self._queued:
            key = next(iter(self._queued))
            again = self._queued.pop(key)
            self._active.add(key)
            try:
                await reconcile(key, again)
            except Exception as exc:  # unexpected: logged, and the key backs off
                delay = self.failed(key)
                log.exception("reconcile of %s failed (%s); again in %s s", key, type(exc).__name__, delay)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self.add(key, self._dirty.pop(key))

    def cancel(self) -> None:
        """Stop: workers cancelled, timers dropped (a replica that stops acts on nothing more)."""
        for task in list(self._workers):
            task.cancel()
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
