"""The dispatcher: a background task of every API replica that sends due deliveries.

Each pass claims due deliveries (a transaction moves `nextAt` a lease ahead: two replicas never send one
at the same moment, and a crashed sender's delivery is due again when the lease ends), POSTs each once,
and records the outcome: delivered on a 2xx; otherwise the next attempt after the retry schedule's delay
(5 s, 30 s, 5 min by default), and dead after the last. It also fans out events a crashed replica left
and deletes old delivered and dead deliveries. Everything it knows is in Firestore.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from agentry_common.notifications import (
    DeliveryState,
    Notification,
    SinkKind,
    next_delay,
    signed_headers,
    slack_text,
)

from ...settings import Settings
from ...storage import Store, now_iso
from .outbox import Outbox
from .sinks import Attempt, SinkCipher, post
from .zones import ZoneWatch

log = logging.getLogger("agentry.api.notifications")
Doc = dict[str, Any]
BATCH = 100
CONCURRENCY = 32
SWEEP_EVERY = 30.0  # seconds between sweeps of events not fanned out, and between prunes
ZONES_EVERY = 5  # polls between looks at the gateway's call records for budget zones (10 s by default)


def later(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def outcome(doc: Doc, attempt: Attempt, schedule: Sequence[float]) -> Doc:
    """The fields an attempt's outcome writes: delivered, the next attempt, or dead."""
    attempts = int(doc.get("attempts") or 0) + 1
    fields: Doc = {"attempts": attempts, "lastStatus": attempt.status, "updatedAt": now_iso()}
    if attempt.ok:
        return {
            **fields,
            "state": DeliveryState.DELIVERED.value,
            "deliveredAt": fields["updatedAt"],
            "lastError": None,
        }
    fields["lastError"] = attempt.error
    failures = int(doc.get("failures") or 0) + 1
    fields["failures"] = failures
    delay = None if attempt.final else next_delay(failures, schedule)
    if delay is None:
        return {**fields, "state": DeliveryState.DEAD.value, "deadAt": fields["updatedAt"]}
    return {**fields, "nextAt": later(delay)}


class Dispatcher:
    def __init__(self, store: Store, outbox: Outbox, cipher: SinkCipher, settings: Settings) -> None:
        self.store, self.outbox, self.cipher, self.settings = store, outbox, cipher, settings
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self.replica = uuid.uuid4().hex[:12]
        self._task: asyncio.Task[None] | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._swept = self._zoned = 0.0
        self.zones = ZoneWatch(store, outbox, settings.namespace)

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="notify-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.aclose()

    async def _forever(self) -> None:
        while True:
            try:
                if time.monotonic() - self._swept > SWEEP_EVERY:
                    self._swept = time.monotonic()
                    await self.outbox.sweep()
                    keep = dt.timedelta(days=self.settings.notify_keep_days)
                    before = (dt.datetime.now(dt.UTC) - keep).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    await self.store.prune_notifications(before)
                if time.monotonic() - self._zoned > ZONES_EVERY * self.settings.notify_poll_seconds:
                    self._zoned = time.monotonic()
                    await self.zones.pass_once()
                while await self.pass_once() == BATCH:
                    pass  # a full batch: more may be due
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notification pass failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.kick.wait(), self.settings.notify_poll_seconds)
            self.outbox.kick.clear()

    async def pass_once(self) -> int:
        """Claim and send what is due now; how many were due."""
        now = now_iso()
        due = await self.store.due_deliveries(now, BATCH)
        subs: dict[str, asyncio.Task[Doc | None]] = {}  # each subscription read once a pass
        for doc in due:
            sub_id = str(doc.get("subscription"))
            if sub_id not in subs:
                subs[sub_id] = asyncio.ensure_future(self.store.subscription(sub_id))
        await asyncio.gather(*(self._one(doc["id"], now, subs[str(doc.get("subscription"))]) for doc in due))
        return len(due)

    async def _one(self, dl_id: str, now: str, sub: asyncio.Task[Doc | None]) -> None:
        async with self._limit:
            claim = f"{self.replica}/{uuid.uuid4().hex[:8]}"
            doc = await self.store.claim_delivery(
                dl_id, now, later(self.settings.notify_lease_seconds), claim
            )
            if doc is None:
                return  # another replica took it, or it is no longer due
            attempt = await self.send(doc, await sub)
            fields = outcome(doc, attempt, self.settings.notify_retry_seconds)
            if not await self.store.finish_attempt(dl_id, claim, fields):
                log.warning("delivery %s: lease lost before its outcome was recorded", dl_id)
            elif fields.get("state") == DeliveryState.DEAD:
                log.warning(
                    "delivery %s dead after %s attempts: %s", dl_id, fields["attempts"], attempt.error
                )

    async def send(self, doc: Doc, sub: Doc | None) -> Attempt:
        """One attempt of a delivery to its subscription's sink."""
        if sub is None or sub.get("deleted"):
            return Attempt(False, None, "the subscription was deleted", final=True)
        try:
            sink = self.cipher.open(sub["id"], str(sub.get("sink")))
        except ValueError as exc:
            return Attempt(False, None, str(exc))
        note = Notification.model_validate(doc["notification"])
        return await deliver(self.client, sub, sink.url, sink.secret, note, self.settings)


async def deliver(
    client: httpx.AsyncClient, sub: Doc, url: str, secret: str | None, note: Notification, settings: Settings
) -> Attempt:
    """POST a notification to a sink: signed JSON for a webhook, a text message for Slack."""
    if sub.get("sinkKind") == SinkKind.SLACK:
        body = json.dumps(slack_text(note)).encode()
        headers = {"content-type": "application/json"}
    else:
        body = note.model_dump_json().encode()
        try:
            headers = signed_headers(secret or "", note.id, int(time.time()), body, note.kind.value)
        except ValueError as exc:
            return Attempt(False, None, f"the signing secret is unusable: {exc}")
    return await post(
        client, url, body, headers, settings.notify_allowed_hosts, settings.notify_timeout_seconds
    )
