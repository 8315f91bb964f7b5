"""Push across replicas: Firestore listeners per API process on what any replica writes.

* `EventFeed`: the events any replica appends. Each new event wakes this process's streams of its
  user, so a status change written by one replica reaches a browser on another in about the
  listener's latency instead of the poll period.
* `RevocationFeed`: sessions ended anywhere (sign-out, a revoked token, a deleted user), so this
  process drops them from its session cache (deps.py) at once, not at the cache's expiry.

Each listener is a query on a collection with `<time field> >= anchor`. Firestore keeps a listener's whole
result set in memory, so the query is re-anchored every `window` seconds (a new listener from a
little before now; the one it replaces dropped once the new one has its first snapshot): memory holds
about a window of events, and the new listener's first snapshot covers everything since its anchor, so
nothing falls between the two. Documents that snapshot repeats (already delivered by the replaced
listener) are not delivered again. Re-anchoring also replaces a listener that died. The client
library runs listeners on threads of its own; wake-ups are handed to the event loop.

The window is 10 s, not a minute: the emulator's delivery slows as a listener's result set grows, and
a listener never re-anchored leaves events undelivered (`python -m bench.listener_lag` measures it;
`bench/api_replicas.py` the delivery across two API pods). On Firestore the price is the first
snapshots' reads: each event is read about 1.5 times per replica rather than once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Self

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.watch import ChangeType, Watch

from agentry_common.records import Collection

log = logging.getLogger("agentry.api.feed")

Wake = Callable[[Iterable[str]], None]
ClientFactory = Callable[[], firestore.Client]
OVERLAP = dt.timedelta(seconds=5)  # createdAt is the writing replica's clock: allow for skew
WINDOW_SECONDS = 10.0


def anchor_iso(now: dt.datetime) -> str:
    return (now - OVERLAP).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def revoked_sessions(changes: Iterable[Any]) -> set[str]:
    """The session documents (ids: hashes of session ids) ended among a snapshot's changes."""
    return {str(c.document.id) for c in changes if c.type in (ChangeType.ADDED, ChangeType.MODIFIED)}


def added_users(changes: Iterable[Any]) -> set[str]:
    """The users with a new event among a snapshot's changes."""
    users: set[str] = set()
    for change in changes:
        if change.type == ChangeType.ADDED:
            user = (change.document.to_dict() or {}).get("userId")
            if isinstance(user, str):
                users.add(user)
    return users


def _end_with_unsubscribe(watch: Watch) -> None:
    """A listener unsubscribed while Firestore is unreachable must not retry on its own.

    The library's stream (google-api-core's ResumableBidiRpc) reopens itself after a recoverable error
    (UNAVAILABLE) without a pause and without looking whether it was closed, and unsubscribe() waits
    only a second for its thread. A listener replaced during an outage would go on reopening, a thread
    per attempt, for the life of the process (about a core, and thousands of threads). Once closed,
    no error is recoverable: its thread ends at the next one.
    """
    rpc: Any = watch._rpc  # no public switch: the library's own retry policy, narrowed
    recoverable = rpc._should_recover
    rpc._should_recover = lambda exc: not rpc._finalized and recoverable(exc)


class AnchoredFeed:
    """A listener on `collection` where `field >= anchor`, re-anchored every `window` seconds; each
    snapshot's changes go through `pick`, and the keys it returns to the `deliver` callback, on the
    event loop."""

    collection: str = Collection.EVENTS
    field: str = "createdAt"
    pick: Callable[[Iterable[Any]], set[str]] = staticmethod(added_users)

    def __init__(self, client_factory: ClientFactory, window: float = WINDOW_SECONDS) -> None:
        self._factory, self._window = client_factory, window
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # two listeners overlap while one replaces the other
        # document path -> when its ADDED change was delivered, oldest first
        self._delivered: OrderedDict[str, float] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: Wake | None = None
        self.snapshots = 0  # seen by tests and the benchmark

    @classmethod
    def of(cls, project: str, database: str) -> Self:
        return cls(lambda: firestore.Client(project=project, database=database))

    def start(self, loop: asyncio.AbstractEventLoop, wake: Wake) -> None:
        """Start listening (once; later calls do nothing)."""
        if self._thread is not None:
            return
        self._loop, self._wake = loop, wake
        name = f"agentry-feed-{self.collection}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        client: Any = self._factory()  # the library's close() and unsubscribe() are untyped
        watch: Any = None
        try:
            while not self._stopped.is_set():
                fresh, current = self._listen(client)
                # The old listener serves until the new one has its first snapshot: a loaded server
                # may take seconds to answer a new query, and what is written meanwhile must not wait.
                if fresh is not None:
                    current.wait(self._window)
                if watch is not None:
                    watch.unsubscribe()
                watch = fresh
                self._stopped.wait(self._window)
        finally:
            if watch is not None:
                watch.unsubscribe()
            client.close()

    def _listen(self, client: firestore.Client) -> tuple[Watch | None, threading.Event]:
        """A listener from a little before now, and the flag its first snapshot sets."""
        anchor = anchor_iso(dt.datetime.now(dt.UTC))
        query = client.collection(self.collection).where(filter=FieldFilter(self.field, ">=", anchor))
        current = threading.Event()

        def on_snapshot(docs: Any, changes: Any, read_time: Any) -> None:
            self._on_snapshot(changes)
            current.set()

        try:
            watch: Watch = query.on_snapshot(on_snapshot)
        except Exception as exc:  # polling and expiry still hold; the next window tries again
            log.warning("%s listener not started: %s", self.collection, exc)
            return None, current
        _end_with_unsubscribe(watch)
        return watch, current

    def _on_snapshot(self, changes: Any) -> None:
        self.snapshots += 1
        keys = type(self).pick(self._fresh(changes))
        if keys and self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, keys)

    def _fresh(self, changes: Iterable[Any]) -> list[Any]:
        """The changes without the ADDED documents already delivered (a new listener's first snapshot
        repeats its anchor's overlap with the old one); what is remembered spans a few windows."""
        now = time.monotonic()
        fresh = []
        with self._lock:
            for change in changes:
                if change.type == ChangeType.ADDED:
                    path = change.document.reference.path
                    if path in self._delivered:
                        continue
                    self._delivered[path] = now
                fresh.append(change)
            horizon = now - 3 * self._window - OVERLAP.total_seconds()
            while self._delivered and next(iter(self._delivered.values())) < horizon:
                self._delivered.popitem(last=False)
        return fresh


class EventFeed(AnchoredFeed):
    """New events: the users whose streams to wake."""


class RevocationFeed(AnchoredFeed):
    """Ended sessions: the session documents to drop from the cache."""

    collection = Collection.SESSIONS
    field = "revokedAt"
    pick = staticmethod(revoked_sessions)
