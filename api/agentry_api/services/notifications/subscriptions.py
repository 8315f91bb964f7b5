"""Subscriptions: who wants which events sent where. Owner-scoped: a user sees, edits, tests and
redelivers only their own; an Agent or Workflow in a scope must be theirs; only admins subscribe to
everyone's events. A webhook's signing secret is shown once, in the answer that created it."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from agentry_common.notifications import DeliveryState, EventKind, Notification, SinkKind, new_secret

from ...auth import User
from ...schemas.notifications import SubscriptionIn, SubscriptionPatch
from ...settings import Settings
from ...storage import Store, now_iso
from ..errors import Conflict, Invalid, NotFound
from ..workflows import WorkflowService
from .dispatcher import deliver
from .outbox import Outbox
from .sinks import Attempt, Sink, SinkCipher, SinkRefused, check_url, resolve, url_hint

Doc = dict[str, Any]
MAX_SUBSCRIPTIONS = 50


class Subscriptions:
    def __init__(
        self,
        store: Store,
        cipher: SinkCipher,
        outbox: Outbox,
        workflows: WorkflowService,
        settings: Settings,
        client: httpx.AsyncClient,
    ) -> None:
        self.store, self.cipher, self.outbox = store, cipher, outbox
        self.workflows, self.settings, self.client = workflows, settings, client

    async def owned(self, user: User) -> list[Doc]:
        return await self.store.list_subscriptions(user.id)

    async def get(self, user: User, sub_id: str) -> Doc:
        doc = await self.store.subscription(sub_id)
        if doc is None or doc.get("userId") != user.id:
            raise NotFound(f"subscription {sub_id!r} not found")
        return doc

    async def create(self, user: User, body: SubscriptionIn) -> Doc:
        if len(await self.store.list_subscriptions(user.id)) >= MAX_SUBSCRIPTIONS:
            raise Conflict(f"at most {MAX_SUBSCRIPTIONS} subscriptions per user; delete one first")
        scope = await self._check_scope(user, body.scope.kind, body.scope.name)
        await self._check_url(body.url)
        now = now_iso()
        sub_id = "sub-" + secrets.token_hex(8)
        secret = new_secret() if body.sink == SinkKind.WEBHOOK else None
        doc: Doc = {
            "id": sub_id,
            "userId": user.id,
            "name": body.name,
            "sinkKind": body.sink.value,
            "sink": self.cipher.seal(sub_id, Sink(body.url, secret)),
            "urlHint": url_hint(body.url),
            "events": [k.value for k in body.events],
            "scope": scope,
            "everyone": scope["kind"] == "everyone",
            "enabled": body.enabled,
            "createdAt": now,
            "updatedAt": now,
        }
        await self.store.put_subscription(doc)
        return {**doc, "secret": secret}

    async def update(self, user: User, sub_id: str, body: SubscriptionPatch) -> Doc:
        doc = await self.get(user, sub_id)
        if body.url is not None:
            await self._check_url(body.url)
            old = self._open(doc)
            doc["sink"] = self.cipher.seal(sub_id, Sink(body.url, old.secret))
            doc["urlHint"] = url_hint(body.url)
        if body.scope is not None:
            doc["scope"] = await self._check_scope(user, body.scope.kind, body.scope.name)
            doc["everyone"] = doc["scope"]["kind"] == "everyone"
        for field in ("name", "enabled"):
            if getattr(body, field) is not None:
                doc[field] = getattr(body, field)
        if body.events is not None:
            doc["events"] = [k.value for k in body.events]
        doc["updatedAt"] = now_iso()
        await self.store.put_subscription(doc)
        return doc

    async def delete(self, user: User, sub_id: str) -> None:
        await self.get(user, sub_id)
        await self.store.delete_subscription(sub_id)

    async def test(self, user: User, sub_id: str) -> Attempt:
        """Send a test notification now, outside the outbox (no retries): the sink's answer."""
        doc = await self.get(user, sub_id)
        sink = self._open(doc)
        note = Notification(
            id="test-" + secrets.token_hex(8),
            event="test",
            kind=EventKind.RUN_SUCCEEDED,
            occurredAt=now_iso(),
            userId=user.id,
            title=f"Test notification of subscription {doc['name']}",
            message="Agentry can reach this sink.",
            link=self.outbox.link("/notifications"),
            data={"test": True},
        )
        return await deliver(self.client, doc, sink.url, sink.secret, note, self.settings)

    async def deliveries(self, user: User, state: str | None, limit: int) -> list[Doc]:
        return await self.store.list_deliveries(user.id, state, limit)

    async def redeliver(self, user: User, dl_id: str) -> Doc:
        """A dead (or delivered) delivery of the caller's, due again now with a fresh retry schedule."""
        fields = {"state": DeliveryState.PENDING.value, "nextAt": now_iso(), "failures": 0}
        fields |= {"updatedAt": now_iso(), "redeliveredAt": now_iso()}
        doc = await self.store.redeliver(dl_id, user.id, fields)
        if doc is None:
            raise NotFound(f"delivery {dl_id!r} not found")
        self.outbox.kick.set()
        return doc

    def _open(self, doc: Doc) -> Sink:
        try:
            return self.cipher.open(doc["id"], doc["sink"])
        except ValueError as exc:
            raise Conflict(f"{exc}: delete this subscription and subscribe again") from None

    async def _check_url(self, url: str) -> None:
        try:
            await resolve(check_url(url), self.settings.notify_allowed_hosts)
        except SinkRefused as exc:
            raise Invalid(["body", "url"], str(exc)) from None

    async def _check_scope(self, user: User, kind: str, name: str | None) -> Doc:
        if kind in ("user", "everyone"):
            if kind == "everyone" and user.kind != "admin":
                raise Invalid(["body", "scope", "kind"], "only admins subscribe to everyone's events")
            return {"kind": kind, "name": None}
        if not name:
            raise Invalid(["body", "scope", "name"], f"a {kind} scope names the {kind}")
        if kind == "agent":
            if await self.store.owned_agent(user.id, name) is None:
                raise Invalid(["body", "scope", "name"], f"agent {name!r} not found")
        else:
            try:
                await self.workflows.get(user, name)
            except NotFound:
                raise Invalid(["body", "scope", "name"], f"workflow {name!r} not found") from None
        return {"kind": kind, "name": name}
