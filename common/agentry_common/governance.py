"""The contract between the operator, the runtime and the LLM gateway (docs/governance.md).

* Admission: the operator asks `POST ADMISSION_PATH` with an `AdmissionRequest` before it starts a
  run's Job and gets an `AdmissionDecision` back.
* Budget subjects: who a call or a run is charged to. One rule (`budget_subjects`), used by admission
  and by metering alike, so what admission checks is what metering charges.
* Refusals: the error type a client sees on a budget refusal (HTTP 402), which the provider layer
  treats as final (no retry, no fallback).
* Admin-managed budgets (the API writes, the gateway reads): budget policies and manual throttles
  in Firestore (`BUDGET_POLICIES`, `BUDGET_THROTTLES`, each change audited in `BUDGET_AUDIT`), the
  one shape of a limit and a policy (`LimitSpec`, `PolicySpec`, `ThrottleSpec`) and the window rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .records import Collection

ADMISSION_PATH: Final = "/v1/agentry/admission"
RUN_END_PATH: Final = "/v1/agentry/executions/end"


class RefusalType(StrEnum):
    """The LLM gateway's refusals of a call: decisions, final for a runtime's provider chain."""

    BUDGET_EXCEEDED = "budget_exceeded"  # 402: a budget's limit
    STEERING_QUEUED = "steering_queued"  # 409: deliver the run's queued message first (steering.py)


class Zone(StrEnum):
    NORMAL = "normal"
    THROTTLE = "throttle"
    CRITICAL = "critical"
    EXHAUSTED = "exhausted"


class Action(StrEnum):
    ALLOW = "allow"
    THROTTLE = "throttle"  # go ahead on the cheaper model
    WAIT = "wait"  # admission only: stay Pending until `until`
    REFUSE = "refuse"


class Scope(StrEnum):
    USER = "user"
    AGENT = "agent"
    EXECUTION = "execution"
    NAMESPACE = "namespace"  # every call of one namespace (subject: the namespace)
    INSTALLATION = "installation"  # every call through the gateway (subject: INSTALLATION_SUBJECT)


INSTALLATION_SUBJECT: Final = "all"


@dataclass(frozen=True)
class BudgetSubjects:
    """The counters one run's calls are charged to: its user, agent and Execution, and its namespace
    and the installation as a whole (the gateway counts those two only while a budget applies)."""

    user: str
    agent: str
    execution: str
    namespace: str = ""
    installation: str = INSTALLATION_SUBJECT


def budget_subjects(
    namespace: str, agent: str, execution: str | None, execution_uid: str | None, user: str | None
) -> BudgetSubjects:
    """`user`: the Agent's owner label, else `ns:<namespace>`; agent `ns/agent`; execution
    `ns/execution/uid` (the uid keeps a re-created Execution of the same name from inheriting the
    old one's spend). Without an Execution (an admission probe), `ns/-`. Namespace: `namespace`;
    installation: `all`."""
    run = f"{namespace}/{execution or '-'}" + (f"/{execution_uid}" if execution and execution_uid else "")
    return BudgetSubjects(
        user=user or f"ns:{namespace}", agent=f"{namespace}/{agent}", execution=run, namespace=namespace
    )


class AdmissionRequest(BaseModel):
    """The operator's question: may this Execution start now?"""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str = Field(min_length=1, max_length=63)
    agent: str = Field(min_length=1, max_length=253)
    user: str | None = Field(default=None, max_length=256, description="owner label; default ns:<namespace>")
    execution: str | None = Field(default=None, max_length=253)
    execution_uid: str | None = Field(default=None, alias="executionUid", max_length=64)
    priority: int = Field(default=5, ge=0, le=10)
    model: str | None = Field(default=None, max_length=128)
    max_wait_seconds: float | None = Field(default=None, alias="maxWaitSeconds", ge=0)

    def subjects(self) -> BudgetSubjects:
        return budget_subjects(self.namespace, self.agent, self.execution, self.execution_uid, self.user)


class AdmissionDecision(BaseModel):
    """The gateway's answer. `until`/`retryAfterSeconds` with WAIT; `budget` is the binding limit."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    action: Action
    zone: Zone = Zone.NORMAL
    reason: str = ""
    priority: int = 5
    requested_model: str | None = Field(default=None, alias="requestedModel")
    model: str | None = None
    until: str | None = None
    retry_after_seconds: float | None = Field(default=None, alias="retryAfterSeconds")
    budget: dict[str, Any] | None = None
    limits: list[dict[str, Any]] = Field(default_factory=list)


class RunEnd(BaseModel):
    """The operator's notice that a run ended: its reservations can be released."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    execution: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64, description="the Execution's uid, as in its run tokens")


# -- admin-managed budgets (docs/governance.md, "Budgets set by admins") ---------------------------------

# Firestore collections: written by the API (admins), read by the gateway. BUDGET_ADMIN holds one
# document the gateway writes, GATEWAY_CONFIG_DOC: the governance file's policies, read-only in the UI.
BUDGET_POLICIES: Final = Collection.BUDGET_POLICIES.value
BUDGET_THROTTLES: Final = Collection.BUDGET_THROTTLES.value
BUDGET_AUDIT: Final = Collection.BUDGET_AUDIT.value
BUDGET_ADMIN: Final = Collection.BUDGET_ADMIN.value
GATEWAY_CONFIG_DOC: Final = "gatewayConfig"
# How often a gateway pod reads them again: the staleness bound of an admin's change.
ADMIN_REFRESH_SECONDS: Final = 5.0
# Scopes an admin may put a policy or a throttle on (an Execution's subject carries its uid).
ADMIN_SCOPES: Final = (Scope.USER, Scope.AGENT, Scope.NAMESPACE, Scope.INSTALLATION)
POLICY_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,62}$"

MAX_AMOUNT: Final = 10**15  # a limit's tokens or messages: stored as a 64-bit integer
_ROLLING = re.compile(r"^(\d+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> tuple[str, int]:
    """`5h` -> ("rolling", 18000); `day`, `month`, `total` -> (kind, 0). ValueError otherwise."""
    value = text.strip().lower()
    if value in ("day", "month", "total"):
        return value, 0
    match = _ROLLING.match(value)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(
            f"bad budget window {text!r}: use rolling '<n>m', '<n>h', '<n>d' (e.g. 5h), "
            "or 'day', 'month', 'total'"
        )
    return "rolling", int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class ThrottleMode(StrEnum):
    """What a manual throttle forces its subject into."""

    THROTTLE = "throttle"  # the throttle zone: the cheaper model; low-priority runs wait
    REFUSE = "refuse"  # as if exhausted: every call and every run refused


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LimitSpec(_Spec):
    """Limits over one window; any of tokens, messages, costUSD (at least one)."""

    window: str = Field(max_length=16, description="rolling <n>m|<n>h|<n>d, or day, month, total")
    tokens: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    messages: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    cost_usd: Decimal | None = Field(default=None, alias="costUSD", gt=0, max_digits=18, decimal_places=9)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @model_validator(mode="after")
    def _some_metric(self) -> LimitSpec:
        if self.tokens is None and self.messages is None and self.cost_usd is None:
            raise ValueError(f"limit over {self.window!r} sets none of tokens, messages, costUSD")
        return self


class PolicySpec(_Spec):
    """Limits for every subject of `scope` whose key matches `match` (a shell-style pattern)."""

    name: str = Field(min_length=1, max_length=128)
    scope: Scope
    match: str = Field(default="*", min_length=1, max_length=256)
    limits: list[LimitSpec] = Field(min_length=1, max_length=20)


class ThrottleSpec(_Spec):
    """An admin's manual throttle: `subject` of `scope` (a shell pattern like a policy's `match`) is
    forced into `mode` until `until` (unix seconds; None: until lifted), for `reason`."""

    id: str = Field(min_length=1, max_length=64)
    scope: Scope
    subject: str = Field(min_length=1, max_length=256)
    mode: ThrottleMode = ThrottleMode.THROTTLE
    reason: str = Field(min_length=1, max_length=500)
    until: float | None = None
    by: str = Field(default="", max_length=256, description="who set it (a user id)")
