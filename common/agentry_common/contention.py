"""Firestore transactions under contention: one policy for every store of the API and the gateway.

Two transactions on one document contend. The client library retries an aborted commit back to back
(`max_attempts`), then raises `ValueError` from the last `Aborted`; a read that meets another
transaction's lock aborts too, and is not retried at all. Back-to-back retries of writers that
started together collide again, for as long as the machine is busy. So `transact`:

- lets the transactions of one process on one document take turns (`KeyedLocks`), since they
  would only contend;
- retries a whole transaction that still aborts (another replica holds the document) after a
  jittered pause that grows, a bounded number of times;
- retries contention only: any other error, the transaction's own `ValueError`s included, passes
  through at once. When the rounds run out it raises `Contended`, which the servers answer with 503
  and a reason.

Only the servers call this (google-cloud-firestore is theirs, imported when first needed).
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Final, TypeVar

T = TypeVar("T")

ROUNDS: Final = 5  # whole transactions, each with the library's own commit retries
ATTEMPTS: Final = 20  # the library's commit attempts per round
PAUSE: Final = 0.2  # seconds: the upper bound of the first round's jittered pause

log = logging.getLogger("agentry.contention")


class Contended(Exception):
    """A transaction kept conflicting with concurrent writers; the caller may retry later."""


def is_contention(exc: BaseException) -> bool:
    """An `Aborted`, or the library's "failed to commit in N attempts" (a `ValueError` from one)."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.Aborted) or (
        isinstance(exc, ValueError) and isinstance(exc.__cause__, gexc.Aborted)
    )


class KeyedLocks:
    """One `asyncio.Lock` per key (a document's path), kept while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock


async def transact(
    client: Any,
    txn: Callable[[Any], Awaitable[T]],
    what: str,
    lock: asyncio.Lock | None = None,
    attempts: int = ATTEMPTS,
    pause: float = PAUSE,
) -> T:
    """Run `txn` (an `@async_transactional` function) in a transaction of `client`, under `lock`
    (the document's, from a `KeyedLocks`). `what` names the document for the error: "the stream
    slots of a user". `attempts`: the library's commit attempts per round; `pause`: the upper bound
    (seconds) of the first round's jittered pause, later rounds' grow with the round."""
    guard: AbstractAsyncContextManager[Any] = lock if lock is not None else nullcontext()
    for n in range(1, ROUNDS + 1):
        try:
            async with guard:
                return await txn(client.transaction(max_attempts=attempts))
        except Exception as exc:
            if not is_contention(exc):
                raise
            if n == ROUNDS:
                raise Contended(f"{what} is too busy (concurrent writers); retry shortly") from exc
            log.info("transaction on %s contended (%s), round %d of %d", what, type(exc).__name__, n, ROUNDS)
        await asyncio.sleep(random.uniform(0.01, pause) * n)
    raise AssertionError("unreachable")
