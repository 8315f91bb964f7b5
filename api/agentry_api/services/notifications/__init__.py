"""Notifications (docs/events.md, "Events out"): subscriptions, the outbox of deliveries, and the
dispatcher that sends them. `Notifications` holds the parts the app state keeps."""

from __future__ import annotations

from dataclasses import dataclass

from ...settings import Settings
from ...storage import Store
from ..workflows import WorkflowService
from .dispatcher import Dispatcher
from .outbox import Outbox
from .sinks import SinkCipher
from .subscriptions import Subscriptions

__all__ = ["Dispatcher", "Notifications", "Outbox", "SinkCipher", "Subscriptions"]


@dataclass
class Notifications:
    outbox: Outbox
    dispatcher: Dispatcher
    subscriptions: Subscriptions

    @classmethod
    def of(
        cls, store: Store, settings: Settings, workflows: WorkflowService, session_secret: str
    ) -> Notifications:
        cipher = SinkCipher(session_secret)
        outbox = Outbox(store, settings.public_url)
        dispatcher = Dispatcher(store, outbox, cipher, settings)
        subs = Subscriptions(store, cipher, outbox, workflows, settings, dispatcher.client)
        return cls(outbox, dispatcher, subs)
