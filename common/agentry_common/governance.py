"""The contract between the operator, the runtime and the LLM gateway (docs/governance.md).

* Admission: the operator asks `POST ADMISSION_PATH` with an `AdmissionRequest` before it starts a
  run's Job and gets an `AdmissionDecision` back.
* Budget subjects: who a call or a run is charged to. One rule (`budget_subjects`), used by admission
  and by metering alike, so what admission checks is what metering charges.
* Refusals: the error type a client sees on a budget refusal (HTTP 402), which the provider layer
  treats as final (no retry, no fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

ADMISSION_PATH: Final = "/v1/agentry/admission"
RUN_END_PATH: Final = "/v1/agentry/executions/end"


class RefusalType(StrEnum):
    BUDGET_EXCEEDED = "budget_exceeded"


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
