"""Wake-ups sent straight to the other API processes: an event published here is announced to every
other process in a signed UDP datagram, so a stream held elsewhere re-reads Firestore at once instead
of at the pace of that process's Firestore listener (on the emulator its delivery has a tail of
seconds under load: docs/api.md, "Live delivery"). The listener and the poll still deliver every
event: a datagram lost, late or refused costs latency, never an event.

Addresses: each process binds `address:port` (port 0: any free one) and registers what it bound in
`apiPeers` (storage/peers.py), renewed every `every` seconds; the registry is read on each beat, so a
new replica is woken within a beat of starting.

A datagram is `{"t": sent at (ms), "u": [user ids]}` as JSON followed by its HMAC-SHA256 under a key
derived from the session secret, which every replica shares: a forged, stale (±30 s) or repeated
datagram is dropped. It names only the users who may have news; the news is read from Firestore.
With `"e": 1` the news is that a credential of theirs ended (sign-out, a revoked token, a deleted
user): the receiver drops what it cached of them and their open channels ask again at once
(credentials.py). A receiver that predates `e` only wakes their streams, which is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..metrics import PEER_WAKES
from ..settings import Settings
from ..storage.peers import PeerStore
from .feed import Wake

log = logging.getLogger("agentry.api.peers")

KEY_CONTEXT = b"agentry-api-peer-wake-v1"
MAX_AGE_SECONDS = 30.0
MAX_DATAGRAM = 1200  # under any pod network's MTU: never fragmented
TAG_BYTES = 32


def peer_key(session_secret: str) -> bytes:
    """The datagrams' key: derived, so the session secret itself never signs anything but cookies."""
    return hmac.new(session_secret.encode(), KEY_CONTEXT, hashlib.sha256).digest()


@dataclass(frozen=True)
class Notice:
    users: list[str]
    ended: bool  # a credential of theirs ended, rather than an event of theirs written


def _signed(key: bytes, users: list[str], now: float, ended: bool) -> bytes:
    doc: dict[str, Any] = {"t": int(now * 1000), "u": users}
    if ended:
        doc["e"] = 1
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body + hmac.new(key, body, hashlib.sha256).digest()


def seal(key: bytes, users: Iterable[str], now: float, ended: bool = False) -> list[bytes]:
    """The datagrams announcing `users` (an event of theirs, or with `ended` the end of a credential):
    as few as fit under MAX_DATAGRAM (a user id too long for one is left to the listener)."""
    datagrams: list[bytes] = []
    batch: list[str] = []
    sealed = b""  # `batch`, signed
    for user in users:
        grown = _signed(key, [*batch, user], now, ended)
        if len(grown) <= MAX_DATAGRAM:
            batch.append(user)
            sealed = grown
            continue
        alone = _signed(key, [user], now, ended)
        if len(alone) <= MAX_DATAGRAM:
            datagrams.append(sealed)
            batch, sealed = [user], alone
    if batch:
        datagrams.append(sealed)
    return datagrams


def unseal(key: bytes, data: bytes, now: float) -> list[str] | None:
    """The users a datagram announces; None when it is not ours, not intact or not recent."""
    notice = open_notice(key, data, now)
    return None if notice is None else notice.users


def open_notice(key: bytes, data: bytes, now: float) -> Notice | None:
    """What a datagram announces; None when it is not ours, not intact or not recent."""
    if len(data) <= TAG_BYTES or len(data) > MAX_DATAGRAM:
        return None
    body, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    if not hmac.compare_digest(tag, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    sent, users = doc.get("t"), doc.get("u")
    if not isinstance(sent, int) or abs(now - sent / 1000) > MAX_AGE_SECONDS or not isinstance(users, list):
        return None
    return Notice([u for u in users if isinstance(u, str)], doc.get("e") == 1)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, peers: PeerWake) -> None:
        self.peers = peers

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.peers.received(data)

    def error_received(self, exc: Exception) -> None:  # e.g. a peer's port closed (ICMP): harmless
        log.debug("peer wake-up socket: %s", exc)


class PeerWake:
    """This process's side: receives the others' wake-ups, announces its own events to them."""

    def __init__(self, store: PeerStore, key: bytes, address: str, port: int = 0, every: float = 5.0) -> None:
        self.store, self.key, self.address, self.port, self.every = store, key, address, port, every
        self.id = secrets.token_hex(8)
        self.peers: dict[str, tuple[str, int]] = {}
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # tags accepted in the last MAX_AGE
        self._wake: Wake | None = None
        self._ended: Wake | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, settings: Settings, store: PeerStore) -> PeerWake | None:
        """From the settings: None when off, or when there is no shared session secret to sign with."""
        secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
        if not settings.peer_wake:
            return None
        if not secret:
            log.info("peer wake-ups off: no AGENTRY_SESSION_SECRET to sign them with")
            return None
        return cls(store, peer_key(secret), settings.peer_address, settings.peer_port)

    async def start(self, wake: Wake, ended: Wake | None = None) -> None:
        """Bind, register, and learn the others (a store error is logged; the heartbeat retries). An
        address that cannot be bound turns the wake-ups off, with a warning: the API still serves.
        `wake` gets the users of events announced, `ended` those whose credentials ended."""
        loop = asyncio.get_running_loop()
        self._wake, self._ended = wake, ended
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(self), local_addr=(self.address, self.port)
            )
        except OSError as exc:  # streams still wake through the listener and the poll
            log.warning("peer wake-ups off: cannot bind %s:%d: %s", self.address, self.port, exc)
            return
        self.port = int(self._transport.get_extra_info("sockname")[1])
        await self._beat_or_warn()
        self._task = loop.create_task(self._run(), name="api-peer-heartbeat")
        log.info("peer wake-ups on %s:%d (id %s)", self.address, self.port, self.id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(Exception):  # expires anyway
            await self.store.drop_peer(self.id)

    async def beat(self) -> None:
        await self.store.register_peer(self.id, self.address, self.port, ttl=3 * self.every)
        self.peers = {k: v for k, v in (await self.store.live_peers()).items() if k != self.id}

    async def _beat_or_warn(self) -> None:
        try:
            await self.beat()
        except Exception as exc:  # Firestore unavailable: the peers known stay; the next beat retries
            log.warning("peer registry not updated: %s: %s", type(exc).__name__, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._beat_or_warn()

    def send(self, users: Iterable[str], ended: bool = False) -> None:
        """Announce news for `users` to every other process (fire and forget): an event of theirs, or
        with `ended` the end of a credential of theirs."""
        if self._transport is None or not self.peers:
            return
        datagrams = seal(self.key, users, time.time(), ended)
        for host, port in self.peers.values():
            for datagram in datagrams:
                try:
                    self._transport.sendto(datagram, (host, port))
                except OSError as exc:  # an address this socket cannot reach (other family): the listener's
                    log.debug("peer wake-up to %s:%d not sent: %s", host, port, exc)
                    continue
                PEER_WAKES.labels("sent").inc()

    def received(self, data: bytes) -> None:
        now = time.time()
        notice = open_notice(self.key, data, now)
        tag = data[-TAG_BYTES:]
        while self._seen and next(iter(self._seen.values())) < now - 2 * MAX_AGE_SECONDS:
            self._seen.popitem(last=False)
        if notice is None or tag in self._seen:
            PEER_WAKES.labels("refused").inc()
            return
        self._seen[tag] = now
        PEER_WAKES.labels("received").inc()
        deliver = self._ended if notice.ended and self._ended is not None else self._wake
        if deliver is not None:
            deliver(notice.users)
