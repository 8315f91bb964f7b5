"""Triggers as the API shows and edits them, their deliveries, and the receiver's answer
(docs/events.md, "Events in: triggers")."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from agentry_common.triggers import DEFAULT_MAX_BODY, DEFAULT_TOLERANCE, MappingSpec, Rate, Scheme

from . import Strict

TRIGGER_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class TriggerFields(Strict):
    """What an owner sets; unset fields keep their defaults (create) or values (PATCH)."""

    scheme: Scheme | None = Field(
        default=None, description="GitHub (default) or Generic (Standard Webhooks)."
    )
    toleranceSeconds: int | None = Field(
        default=None, ge=10, le=3600, description="Generic: timestamp tolerance."
    )
    maxBodyBytes: int | None = Field(default=None, ge=1024, le=16 * 1024 * 1024)
    rate: Rate | None = None
    mapping: MappingSpec | None = None
    suspend: bool | None = None


class TriggerIn(TriggerFields):
    name: str = Field(pattern=TRIGGER_NAME, description="DNS label: the last part of the URL.")
    agent: str | None = Field(default=None, min_length=1, max_length=253, description="The Agent it runs.")
    workflow: str | None = Field(default=None, min_length=1, max_length=253, description="Or the Workflow.")

    @model_validator(mode="after")
    def _one_target(self) -> TriggerIn:
        if (self.agent is None) == (self.workflow is None):
            raise ValueError("set exactly one of agent and workflow")
        return self


class TriggerPatch(TriggerFields):
    pass


class LastDeliveryOut(BaseModel):
    time: str
    outcome: str
    reason: str = ""
    run: str = ""


class TriggerOut(BaseModel):
    name: str
    agent: str | None
    workflow: str | None
    url: str = Field(description="Where senders POST: the API's public address and the trigger's path.")
    path: str
    scheme: Scheme
    toleranceSeconds: int = DEFAULT_TOLERANCE
    maxBodyBytes: int = DEFAULT_MAX_BODY
    rate: Rate
    mapping: MappingSpec
    suspend: bool
    secretName: str
    ready: str = Field(description="The Ready condition's status: True, False or Unknown.")
    reason: str
    message: str
    lastDelivery: LastDeliveryOut | None = None
    createdAt: str | None = None


class TriggerCreated(TriggerOut):
    secret: str | None = Field(
        default=None, description="The HMAC key, shown once: at creation and after rotate-secret."
    )


class TriggerList(BaseModel):
    items: list[TriggerOut]


class DeliveryOut(BaseModel):
    receivedAt: str
    outcome: str = Field(description="Accepted, Duplicate or Refused.")
    reason: str = Field(description="Why it was refused (SignatureInvalid, TimestampStale, ...).")
    message: str = ""
    status: int = Field(description="The HTTP status the sender got.")
    deliveryId: str = Field(description="The sender's id (webhook-id or X-GitHub-Delivery).")
    event: str = Field(description="X-GitHub-Event, if sent.")
    run: str = Field(description="The Execution or WorkflowRun it started or repeated.")
    runKind: str = ""
    correlationId: str = ""
    bodyBytes: int = 0
    bodyDigest: str = Field(default="", description="SHA-256 of the body; the body itself is not kept.")
    excerpt: str = Field(
        default="", description="The first characters of an accepted body, unless secret-like."
    )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]


class HookAccepted(BaseModel):
    """The receiver's 202: the run the delivery started (or, `duplicate`, had started)."""

    execution: str | None = None
    workflowRun: str | None = None
    correlationId: str
    duplicate: bool
