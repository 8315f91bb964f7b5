"""Request and response models of /api/workflows and /api/workflow-runs (docs/api.md, "Workflows").

The spec mirrors the Workflow CRD's (docs/workflows.md): the same names, bounds and enums, so a
shape error is a 422 from here and only graph rules (cycles, templates, priorities) are left to the
operator's admission webhook, reached through a dry run.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from agentry_common import outputs as named_outputs
from agentry_common.workflows import FailurePolicy, StepWhen

from . import NAME_PATTERN, Strict

STEP_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class AgentRefIn(Strict):
    name: str = Field(min_length=1, max_length=253, description="An Agent id of yours (/api/agents).")


class RetriesIn(Strict):
    limit: int = Field(default=0, ge=0, le=20)
    backoffSeconds: int | None = Field(default=None, ge=1, le=86400)
    factor: int | None = Field(default=None, ge=1, le=10)
    maxBackoffSeconds: int | None = Field(default=None, ge=1, le=86400)


class StepIn(Strict):
    name: str = Field(max_length=40, pattern=STEP_NAME)
    agentRef: AgentRefIn
    input: str | None = Field(default=None, max_length=65536)
    dependsOn: list[str] = Field(default_factory=list, max_length=50)
    when: StepWhen | None = None
    retries: RetriesIn | None = None
    deadlineSeconds: int | None = Field(default=None, ge=1, le=604800)
    priority: int | None = Field(default=None, ge=0, le=10)
    outputs: list[Annotated[str, Field(pattern=named_outputs.NAME_PATTERN)]] | None = Field(
        default=None,
        max_length=named_outputs.MAX_OUTPUTS,
        description="Named outputs the step reports (set_output), for {{ steps.NAME.outputs.KEY }}.",
    )


class ParameterIn(Strict):
    name: str = Field(pattern=PARAM_NAME)
    default: str | None = Field(default=None, max_length=16384)
    description: str | None = Field(default=None, max_length=1024)


class WorkflowSpecIn(Strict):
    parameters: list[ParameterIn] = Field(default_factory=list, max_length=50)
    steps: list[StepIn] = Field(min_length=1, max_length=50)
    parallelism: int | None = Field(default=None, ge=1, le=100)
    failurePolicy: FailurePolicy | None = None
    deadlineSeconds: int | None = Field(default=None, ge=1, le=2592000)
    schedule: dict[str, Any] | None = Field(
        default=None,
        description="The Workflow CRD's spec.schedule (cron, timeZone, concurrencyPolicy, catch-up, "
        "pauseOnFailure, ...), checked by the API server; counts against `scheduled_agents`.",
    )

    def wire(self) -> dict[str, Any]:
        """The CR's spec: unset fields left out (the CRD's defaults apply)."""
        return self.model_dump(mode="json", exclude_none=True)


class WorkflowIn(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Display name (letters, digits, space . _ -).")
    spec: WorkflowSpecIn


class WorkflowRunIn(Strict):
    parameters: dict[str, str] = Field(
        default_factory=dict, max_length=50, description="Values of the Workflow's parameters."
    )


class BackfillIn(Strict):
    """A range of the schedule's past fire times to start once each (at most 10)."""

    start: AwareDatetime = Field(description="First fire time of the range (RFC 3339, with a zone).")
    end: AwareDatetime = Field(description="Last fire time of the range (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> BackfillIn:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    def rfc3339(self) -> dict[str, str]:
        return {
            k: v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for k, v in (("start", self.start), ("end", self.end))
        }


class WorkflowOut(BaseModel):
    id: str
    name: str
    spec: dict[str, Any]
    lastRun: dict[str, Any] | None = None
    status: dict[str, Any] = Field(
        default_factory=dict, description="The CR's status: upcomingRuns, scheduleState, conditions, ..."
    )
    createdAt: str | None = None


class WorkflowList(BaseModel):
    nextCursor: str | None = None
    items: list[WorkflowOut]


class StepOut(BaseModel):
    name: str
    agent: str
    dependsOn: list[str]
    phase: str
    attempts: int = 0
    execution: str | None = None
    startTime: str | None = None
    completionTime: str | None = None
    nextAttemptTime: str | None = None
    tokens: int = 0
    costUSD: str = "0"
    message: str | None = None


class WorkflowRunOut(BaseModel):
    name: str
    workflow: str
    parameters: dict[str, str]
    phase: str
    reason: str | None = None
    message: str | None = None
    progress: str | None = None
    createdAt: str | None = None
    startTime: str | None = None
    completionTime: str | None = None
    steps: list[StepOut]
    totals: dict[str, Any]


class WorkflowRunList(BaseModel):
    nextCursor: str | None = None
    items: list[WorkflowRunOut]
