"""Request and response models of the admin budget routes (/api/budgets/policies, /throttles, /audit).

A limit is the contract's `LimitSpec` (agentry_common.governance): the window rule and the metrics
are checked exactly as the gateway checks them, so what the API accepts the gateway applies."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentry_common.governance import POLICY_NAME_PATTERN, LimitSpec, ThrottleMode

AdminScope = Literal["user", "agent", "namespace", "installation"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyUpdateIn(_In):
    """A budget policy's limits: every subject of `scope` whose key matches `match` is under them."""

    scope: AdminScope
    match: str = Field(
        default="*",
        min_length=1,
        max_length=256,
        description="Shell pattern on the subject: an owner label or ns:<namespace> (user), "
        "<namespace>/<agent> (agent), a namespace; `*` every one.",
    )
    limits: list[LimitSpec] = Field(min_length=1, max_length=20)


class PolicyIn(PolicyUpdateIn):
    name: str = Field(pattern=POLICY_NAME_PATTERN, description="Lower-case letters, digits, . _ -")


class PolicyOut(BaseModel):
    name: str
    scope: str
    match: str
    limits: list[dict[str, Any]]
    source: Literal["config", "admin"] = Field(
        description="config: the gateway's governance file (read-only here); admin: set through this API."
    )
    editable: bool
    createdBy: str | None = None
    createdAt: str | None = None
    updatedBy: str | None = None
    updatedAt: str | None = None


class PoliciesOut(BaseModel):
    policies: list[PolicyOut]
    configPublishedAt: str | None = Field(
        default=None, description="When a gateway pod last published its governance file's policies."
    )


class ThrottleIn(_In):
    """Force a subject into a zone until a time or until lifted; `reason` is shown to those affected."""

    scope: AdminScope
    subject: str = Field(
        default="*",
        min_length=1,
        max_length=256,
        description="user: a user id (or an owner label, ns:<namespace>); agent: <agent> or "
        "<namespace>/<agent>; namespace: its name; installation: ignored (all).",
    )
    mode: ThrottleMode = Field(
        default=ThrottleMode.THROTTLE,
        description="throttle: the cheaper model, low-priority runs wait; refuse: every call refused.",
    )
    reason: str = Field(min_length=1, max_length=500)
    until: dt.datetime | None = Field(default=None, description="ISO 8601 with a zone; none: until lifted.")


class ThrottleOut(BaseModel):
    id: str
    scope: str
    subject: str
    userId: str | None = Field(default=None, description="The user the subject was given as (scope user).")
    mode: str
    reason: str
    until: str | None = None
    active: bool
    createdBy: str
    createdAt: str
    liftedBy: str | None = None
    liftedAt: str | None = None


class ThrottlesOut(BaseModel):
    items: list[ThrottleOut] = Field(
        description="Admins: every active throttle; others: the active ones on their own subjects."
    )


class AuditEntryOut(BaseModel):
    id: str
    at: str
    actor: str
    action: str = Field(description="policy.create|update|delete, throttle.create|lift")
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class AuditOut(BaseModel):
    items: list[AuditEntryOut] = Field(description="Newest first.")
