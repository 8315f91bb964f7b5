"""The API's Firestore store: one class with a method per question the API asks, assembled from one
part per resource. Every per-user read takes the user id and filters on it.

Collections (see docs/api.md, `agentry_common.records.Collection`): users, sessions, tokens, agents,
executions, events, eventKeys, approvals, conversations, apiPeers, triggerDeliveries, notifySubscriptions,
notifyEvents, notifyDeliveries; read only: llmCalls (written by the LLM gateway, docs/governance.md).
Nothing outside this package touches the Firestore client.
"""

from __future__ import annotations

from agentry_common.contention import Contended

from .agents import AgentStore
from .approvals import ApprovalStore
from .base import Doc, event_doc_id, new_client, now_iso, valid_doc_id
from .calls import CallStore
from .notifications import NotificationStore
from .peers import PeerStore
from .runs import RunStore
from .sessions import SessionStore
from .triggers import TriggerStore
from .users import UserStore

__all__ = [
    "Contended",
    "Doc",
    "Store",
    "event_doc_id",
    "new_client",
    "now_iso",
    "valid_doc_id",
]


class Store(
    UserStore,
    SessionStore,
    AgentStore,
    RunStore,
    ApprovalStore,
    CallStore,
    PeerStore,
    TriggerStore,
    NotificationStore,
):
    """Users, tokens and conversations; sessions and quota counts; agents; executions and events;
    approvals; LLM call records; the API processes' wake-up addresses; trigger deliveries; notification
    subscriptions, events and deliveries."""
