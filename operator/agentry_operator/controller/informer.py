"""The informer: the operator's own list and watch of the runs (Executions, and their Jobs and Pods),
and of Namespaces when the namespaces to watch are patterns (namespaces.py).

Every event only feeds event handlers (`handlers/execution.py`, `handlers/outcome.py`, through
run_events.py): no progress, no diff base, no finalizer. An event is a line decoded by msgspec and a
task that awaits the object's previous one (Serial): in order per object, concurrently across
objects.

A watch starts with a listing, in pages, each object handed on with the event type None (as after a
restart: `on_job` reads a listed ended Job's pods), then `on_listed` is called (the handlers' view
is whole: the Agents' totals and pruning wait for it), then it watches from the listing's
resourceVersion with bookmarks, renewed every WATCH_SECONDS; a 410 (the version expired) lists
again; any other failure (the API server down, a refused request) waits (BACKOFF) and watches again
from the last version seen. A listing again hands on a DELETED event for each object handed on
before that it no longer has (deleted while no watch was open), as client-go's informers do; that
event's object is a tombstone: the name, namespace and uid, and the few labels and annotations its
handler reads of a gone object (`Watch.keep`), as last seen (`is_tombstone`); the handlers keep the
rest. Requests carry lightkube's credentials as the hot path's do (wire.py); without any,
or on a 401, one lightkube list refreshes them. Lines are split here, not by aiohttp, whose line
reader refuses lines over 64 KiB (a Pod with a large Agent in its annotation).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msgspec
from lightkube import ALL_NS, AsyncClient
from lightkube.core.client import LabelSelector
from lightkube.core.resource import GlobalResource, NamespacedResource, api_info

from .wire import JSON, Wire, collection

log = logging.getLogger("agentry.operator.watch")

Object = dict[str, Any]  # a Kubernetes object as decoded from JSON
Handler = Callable[[str | None, Object], Awaitable[None]]
Key = tuple[str, str]
Field = tuple[str, str]  # ("labels" or "annotations", a key) of an object's metadata
# An object's uid, then the values of its watch's `keep` fields, each after a NUL: one string per object
# (label values hold no NUL; an annotation's value may, so a `keep` annotation goes last).
Seen = str
SEP = "\0"
TOMBSTONE = "agentry.dev/tombstone"  # the key marking an object as a tombstone (not Kubernetes')

WATCH_SECONDS = 300  # the API server ends each watch after this; the next one starts where it ended
READ_SECONDS = WATCH_SECONDS + 30  # silence longer than this (no event, no bookmark): a dead stream
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before the next attempt, by failures in a row
PAGE = 100  # objects per page of a listing (kube.LIST_CHUNK)


class Expired(Exception):
    """410 Gone: the resourceVersion watched from is no longer kept; list again."""


class Unauthorized(Exception):
    """No credentials yet, or a 401: lightkube's auth flow refreshes them."""


def lines(buffer: bytearray, chunk: bytes) -> list[bytes]:
    """The complete lines `chunk` ends in `buffer` (consumed); the rest stays in `buffer`."""
    buffer += chunk
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    done = bytes(buffer[:end])
    del buffer[: end + 1]
    return [line for line in done.split(b"\n") if line.strip()]


def parse(line: bytes) -> tuple[str, Object]:
    """A watch event: its type and object. An ERROR event raises: Expired for 410, else RuntimeError."""
    event = msgspec.json.decode(line)
    kind, obj = event.get("type"), event.get("object") or {}
    if kind == "ERROR":
        if obj.get("code") == 410:
            raise Expired(obj.get("message", "resource version expired"))
        raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message', '')}")
    return str(kind), obj


def version(obj: Object) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def key_of(obj: Object) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def is_tombstone(obj: Object) -> bool:
    """A DELETED event's object made by a listing again: the object's last state is not known."""
    return bool(obj.get(TOMBSTONE))


def tombstone(key: Key, seen: Seen, keep: tuple[Field, ...]) -> Object:
    uid, *values = seen.split(SEP, len(keep))
    meta: Object = {"name": key[1], "uid": uid, **({"namespace": key[0]} if key[0] else {})}
    for (section, name), value in zip(keep, values, strict=True):
        if value:
            meta.setdefault(section, {})[name] = value
    return {TOMBSTONE: True, "metadata": meta}


def remembered(meta: Object, keep: tuple[Field, ...]) -> Seen:
    """What a tombstone needs of an object: its uid and its `keep` fields. The uid is interned, as
    the handlers' caches intern theirs (state.compact): an Execution's costs nothing more here."""
    uid = sys.intern(str(meta.get("uid", "")))
    if not keep:
        return uid
    return SEP.join((uid, *(str((meta.get(s) or {}).get(n) or "") for s, n in keep)))


def uid_of(seen: Seen) -> str:
    return seen.partition(SEP)[0]


@dataclass
class Serial:
    """Handler calls in order per object, concurrently across objects."""

    handler: Handler
    _last: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def submit(self, event: str | None, obj: Object) -> asyncio.Task[None]:
        key = key_of(obj)
        task = asyncio.create_task(self._call(self._last.get(key), event, obj))
        self._last[key] = task
        self._pending.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: Key, done: asyncio.Task[None]) -> None:
        self._pending.discard(done)
        if self._last.get(key) is done:
            del self._last[key]

    async def _call(self, before: asyncio.Task[None] | None, event: str | None, obj: Object) -> None:
        if before is not None:
            await asyncio.wait([before])  # its outcome is its own (logged there)
        try:
            await self.handler(event, obj)
        except Exception:  # as kopf's event handlers: logged, the next event goes on
            meta = obj.get("metadata") or {}
            log.exception(
                "%s event of %s/%s failed", event or "LISTED", meta.get("namespace"), meta.get("name")
            )

    def cancel(self) -> None:
        """Every event not yet handled (a replica that lost the Lease acts on none)."""
        for task in list(self._pending):
            task.cancel()


@dataclass
class Watch:
    """List and watch one kind's objects with `labels`, in `namespace` (None: every namespace)."""

    client: AsyncClient
    wire: Wire
    res: type[NamespacedResource] | type[GlobalResource]
    labels: LabelSelector
    namespace: str | None
    handler: Handler
    on_listed: Callable[[], None] | None = None  # after each whole listing, its objects handled
    keep: tuple[Field, ...] = ()  # what a tombstone carries besides name, namespace and uid
    _serial: Serial = field(init=False)
    # Every object handed on and not deleted since: a listing again tells which went meanwhile. Named
    # by `_id`: in a namespaced watch its name alone, interned (the handlers' caches share it).
    _seen: dict[str, Seen] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._serial = Serial(self.handler)
        self._path = collection(self.res, self.namespace)
        self._selector = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        self.name = f"{api_info(self.res).plural} in {self.namespace or 'every namespace'}"

    async def run(self) -> None:
        """Forever: list, then watch; cancelled to stop. Nothing but a cancellation ends it."""
        since: str | None = None
        failures, stale = 0, False
        try:
            while True:
                try:
                    if stale:
                        await self._refresh()
                        stale = False
                    if since is None:
                        since = await self._list()
                    began = time.monotonic()
                    since = await self._watch(since)
                    failures = 0
                    if time.monotonic() - began < 1:  # ended at once: not in a tight loop
                        await asyncio.sleep(BACKOFF[0])
                except Expired:
                    log.info("watch of %s expired; listing again", self.name)
                    since = None
                except Unauthorized:
                    if failures:  # refreshed, and refused again: not at once once more
                        await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                    failures, stale = failures + 1, True
                except Exception as exc:  # the API server away, or refusing: wait and go on
                    delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                    failures += 1
                    log.warning(
                        "watch of %s failed (%s: %s); again in %s s",
                        self.name,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
        finally:
            self._serial.cancel()

    async def _list(self) -> str:
        """Every object, in pages, each handed on (type None), then a tombstone for each object seen
        before and not listed; the listing's resourceVersion."""
        token: str | None = None
        listed: set[str] | None = set() if self._seen else None  # a first listing: nothing went
        while True:
            query = {
                "labelSelector": self._selector,
                "limit": str(PAGE),
                **({"continue": token} if token else {}),
            }
            body = await self.wire.get(f"{self._path}?{urlencode(query)}")
            if body is None:
                raise Unauthorized()
            page = msgspec.json.decode(body)
            tasks = [self._hand_on(None, item, listed) for item in page.get("items") or []]
            if tasks:
                await asyncio.wait(tasks)  # a page at a time: a listing of 10,000 not all in memory
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                gone = [self._gone(id_) for id_ in set(self._seen) - listed] if listed is not None else []
                if gone:
                    await asyncio.wait(gone)
                if self.on_listed is not None:
                    self.on_listed()
                return str(meta.get("resourceVersion") or "")

    def _hand_on(self, event: str | None, obj: Object, listed: set[str] | None = None) -> asyncio.Task[None]:
        """Submit an event, after a tombstone for an object of the same name and another uid (one
        replaced while no watch was open), and remember what its own tombstone needs."""
        id_, seen = self._id(key_of(obj)), remembered(obj.get("metadata") or {}, self.keep)
        if listed is not None:
            listed.add(id_)
        before = self._seen.get(id_)
        if before is not None and uid_of(before) != uid_of(seen):
            self._gone(id_)
        if event == "DELETED":
            self._seen.pop(id_, None)
        elif before != seen:
            self._seen[id_] = seen
        return self._serial.submit(event, obj)

    def _id(self, key: Key) -> str:
        return sys.intern(key[1]) if self.namespace is not None else f"{key[0]}/{key[1]}"

    def _gone(self, id_: str) -> asyncio.Task[None]:
        namespace, _, name = (self.namespace, "", id_) if self.namespace is not None else id_.partition("/")
        return self._serial.submit("DELETED", tombstone((namespace, name), self._seen.pop(id_), self.keep))

    async def _watch(self, since: str) -> str:
        """One watch from `since` until the server ends it; the last resourceVersion seen."""
        credentials = self.wire.transport.credentials
        if credentials is None:
            raise Unauthorized()
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": since,
            "timeoutSeconds": str(WATCH_SECONDS),
            "labelSelector": self._selector,
        }
        url = f"{self.wire.server}{self._path}?{urlencode(query)}"
        async with self.wire.transport.stream(
            url, self.wire.headers(credentials, JSON), READ_SECONDS
        ) as answer:
            if answer.status == 401:
                raise Unauthorized()
            if answer.status == 410:
                raise Expired(f"{answer.status}")
            if answer.status >= 400:
                raise RuntimeError(f"watch refused: {answer.status} {(await answer.read())[:200]!r}")
            async for kind, obj in _events(answer.content.iter_any()):
                since = version(obj) or since
                if kind != "BOOKMARK":
                    self._hand_on(kind, obj)
        return since

    async def _refresh(self) -> None:
        """One request by lightkube: its auth flow puts fresh credentials on the transport."""
        if not issubclass(self.res, NamespacedResource):  # Namespaces themselves
            async for _ in self.client.list(self.res, labels=self.labels, chunk_size=1):
                break
            return
        namespace = self.namespace or ALL_NS
        async for _ in self.client.list(self.res, namespace=namespace, labels=self.labels, chunk_size=1):
            break


async def _events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, Object]]:
    buffer = bytearray()
    async for chunk in chunks:
        for line in lines(buffer, chunk):
            yield parse(line)


def start(watches: Iterable[Watch]) -> list[asyncio.Task[None]]:
    """Each watch running in a task of its own (cancel them to stop)."""
    return [asyncio.create_task(w.run(), name=f"watch {w.name}") for w in watches]
