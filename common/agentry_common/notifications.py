"""Contracts of notifications (docs/events.md, "Events out: notifications and approvals"): the event
kinds, the sinks, the retry schedule, and what a webhook sink receives.

A webhook sink gets the Standard Webhooks headers of `agentry_common.triggers` (the Generic scheme of
inbound triggers: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`), keyed with the subscription's signing secret (`whsec_<base64 key>`). The
`webhook-id` is the delivery's id: the same on every attempt, so a receiver drops repeats by it.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from .triggers import sign_generic

SECRET_PREFIX: Final = "whsec_"
HEADER_EVENT: Final = "x-agentry-event"
# The default retry schedule: after the first failure 5 s, then 30 s, then 5 min; then dead.
RETRY_SCHEDULE: Final = (5.0, 30.0, 300.0)


class EventKind(StrEnum):
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"  # failed, cancelled or timed out: `phase` and `reason` say which
    APPROVAL_WAITING = "approval.waiting"
    APPROVAL_EXPIRING = "approval.expiring"
    APPROVAL_ESCALATED = "approval.escalated"  # sent to the Agent's escalation subscription only
    BUDGET_ZONE = "budget.zone"
    SCHEDULE_PAUSED = "schedule.paused"


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class Notification(BaseModel):
    """The JSON body a webhook sink receives (Slack sinks get a text rendering of it)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The delivery's id, also the webhook-id header: the idempotency key.")
    event: str = Field(description="The event's id: the same for every subscription it reaches.")
    kind: EventKind
    occurredAt: str
    userId: str = Field(description="Whose resource the event is about.")
    title: str
    agent: str | None = None
    workflow: str | None = None
    execution: str | None = None
    approval: str | None = None
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    link: str | None = Field(default=None, description="The dashboard page of the subject.")
    data: dict[str, Any] = Field(default_factory=dict)


def next_delay(failures: int, schedule: Sequence[float] = RETRY_SCHEDULE) -> float | None:
    """Seconds until the next attempt after `failures` failed ones; None: give up (dead-letter)."""
    if failures < 1:
        return 0.0
    return schedule[failures - 1] if failures <= len(schedule) else None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for (ValueError if it is not one)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a signing secret is whsec_ and base64") from exc
    if len(key) < 16:
        raise ValueError("a signing secret holds at least 16 bytes")
    return key


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes, kind: str) -> dict[str, str]:
    """The headers of one webhook attempt: signature, id (idempotency key), time and event kind."""
    headers = sign_generic(secret_key(secret), delivery_id, timestamp, body)
    return {**headers, HEADER_EVENT: kind, "content-type": "application/json"}


def slack_text(note: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook payload: a line of text and a section block with the link."""
    detail = " · ".join(x for x in (note.phase, note.reason, note.message) if x)
    text = f"*{note.title}*" + (f"\n{detail}" if detail else "")
    if note.link:
        text += f"\n<{note.link}|Open in Agentry>"
    return {"text": note.title, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
