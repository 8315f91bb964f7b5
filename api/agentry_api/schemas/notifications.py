"""Notification subscriptions and deliveries as the API shows and edits them (docs/events.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agentry_common.notifications import EventKind, SinkKind

from . import Strict

NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"


class ScopeIn(Strict):
    kind: Literal["user", "agent", "workflow", "everyone"] = Field(
        default="user",
        description="user: all of the subscriber's Agents and Workflows; agent or workflow: the one named; "
        "everyone: every user's (admins only).",
    )
    name: str | None = Field(default=None, min_length=1, max_length=253, description="The Agent or Workflow.")


class SubscriptionIn(Strict):
    name: str = Field(pattern=NAME, description="1-64 characters: letters, digits, space, '.', '_', '-'.")
    sink: SinkKind = Field(description="webhook: signed JSON; slack: a Slack-compatible incoming webhook.")
    url: str = Field(min_length=8, max_length=2048, description="Where to POST (kept encrypted).")
    events: list[EventKind] = Field(
        default_factory=list, max_length=10, description="The kinds wanted; empty: every kind."
    )
    scope: ScopeIn = Field(default_factory=ScopeIn)
    enabled: bool = True


class SubscriptionPatch(Strict):
    name: str | None = Field(default=None, pattern=NAME)
    url: str | None = Field(default=None, min_length=8, max_length=2048)
    events: list[EventKind] | None = Field(default=None, max_length=10)
    scope: ScopeIn | None = None
    enabled: bool | None = None


class ScopeOut(BaseModel):
    kind: str
    name: str | None = None


class SubscriptionOut(BaseModel):
    id: str
    name: str
    sink: SinkKind
    urlHint: str = Field(description="Scheme and host of the URL (the rest may be a secret).")
    events: list[str]
    scope: ScopeOut
    enabled: bool
    createdAt: str
    updatedAt: str
    secret: str | None = Field(
        default=None,
        description="A webhook's signing secret (whsec_...): in the answer that created it, and never again.",
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: str = Field(description="Also the webhook-id header: the idempotency key of every attempt.")
    event: str
    subscription: str
    subscriptionName: str | None = None
    kind: str
    title: str
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    nextAt: str | None = None
    lastStatus: int | None = None
    lastError: str | None = None
    link: str | None = None
    createdAt: str
    updatedAt: str
    deliveredAt: str | None = None


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class TestOut(BaseModel):
    delivered: bool
    status: int | None = None
    error: str | None = None
