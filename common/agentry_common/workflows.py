"""Contracts of the Workflow and WorkflowRun custom resources (docs/workflows.md).

A Workflow is a graph of named steps, each an ordinary Execution of an Agent; a WorkflowRun is one
run of it. The operator labels each step's Execution with its run, step and attempt, and owns it by
the WorkflowRun, so `kubectl get ex -l agentry.dev/workflow-run=R` lists a run's steps.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import Field

from .constants import GROUP
from .models import USD, Condition, CRModel, ScheduleState, SkippedRuns
from .naming import short_hash

WORKFLOW_KIND: Final = "Workflow"
WORKFLOW_PLURAL: Final = "workflows"
WORKFLOW_RUN_KIND: Final = "WorkflowRun"
WORKFLOW_RUN_PLURAL: Final = "workflowruns"

# Labels on each step's Execution.
LABEL_WORKFLOW: Final = f"{GROUP}/workflow"
LABEL_WORKFLOW_RUN: Final = f"{GROUP}/workflow-run"
LABEL_WORKFLOW_STEP: Final = f"{GROUP}/workflow-step"
LABEL_WORKFLOW_ATTEMPT: Final = f"{GROUP}/workflow-attempt"

# The WorkflowRun CRD's selectable field: a field selector lists one Workflow's runs, however made.
FIELD_RUN_WORKFLOW: Final = "spec.workflowRef.name"

# Longest object name that also fits a label value (step Executions name their Jobs' labels).
MAX_LABEL_NAME: Final = 63
# Longest WorkflowRun name (its CRD's limit: step Execution names are built from it).
MAX_RUN_NAME: Final = 40


def scheduled_run_name(workflow: str, scheduled_unix: int) -> str:
    """The WorkflowRun a schedule starts for one fire time: the same time always yields the same name,
    so a repeated tick, a restarted operator or a second replica meets 409 instead of a second run.
    A Workflow name too long to fit keeps a hash of the whole name, so two long names never collide."""
    suffix = str(scheduled_unix)
    room = MAX_RUN_NAME - len(suffix) - 1
    prefix = (
        workflow if len(workflow) <= room else f"{workflow[: room - 7].rstrip('-.')}-{short_hash(workflow)}"
    )
    return f"{prefix}-{suffix}"


class StepWhen(StrEnum):
    """When a step with dependencies runs, once every dependency has ended (Always: also under
    FailFast, like `finally`). A step whose condition cannot hold any more is Skipped."""

    SUCCEEDED = "Succeeded"  # every dependency Succeeded (the default)
    FAILED = "Failed"  # at least one dependency Failed
    COMPLETED = "Completed"  # every dependency Succeeded or Failed (none skipped)
    ALWAYS = "Always"  # whatever the dependencies' phases, even after a FailFast stop


class FailurePolicy(StrEnum):
    FAIL_FAST = "FailFast"  # a failed step stops the start of every step but Always ones
    CONTINUE_INDEPENDENT = "ContinueIndependent"  # branches not depending on the failure go on


class RunPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (RunPhase.SUCCEEDED, RunPhase.FAILED)


class StepPhase(StrEnum):
    PENDING = "Pending"  # dependencies not ended, or no parallelism slot yet
    BACKOFF = "Backoff"  # an attempt failed; the next starts at status.steps[].nextAttemptTime
    RUNNING = "Running"  # its Execution is Pending or Running
    WAITING_APPROVAL = "WaitingApproval"  # its Execution waits for a human (holds its dependents only)
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"

    @property
    def terminal(self) -> bool:
        return self in (StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED)


class RunReason(StrEnum):
    """status.reason of a WorkflowRun, and why a step was skipped (status.steps[].message)."""

    STARTED = "Started"
    ALL_SUCCEEDED = "AllStepsSucceeded"
    STEP_FAILED = "StepFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    WORKFLOW_NOT_FOUND = "WorkflowNotFound"
    INVALID_WORKFLOW = "InvalidWorkflow"
    CANCELLED = "Cancelled"  # spec.cancel (e.g. a schedule's concurrencyPolicy Replace)


class SkipReason(StrEnum):
    """Why a schedule's fire time did not start (status.scheduleState.lastSkipped.reason)."""

    CATCHUP_WINDOW = "CatchupWindow"  # missed beyond catchupWindowSeconds / maxCatchupRuns
    CONCURRENCY_POLICY = "ConcurrencyPolicy"  # Forbid with a run active, or older than a Replace


class WorkflowRunRef(CRModel):
    name: str = Field(min_length=1, max_length=253)


class WorkflowRunSpec(CRModel):
    workflow_ref: WorkflowRunRef
    scheduled_time: str | None = None
    cancel: bool = False
    parameters: dict[str, str] = Field(default_factory=dict, max_length=50)


class StepStatus(CRModel):
    """One step of a run (status.steps[]): its phase, its attempts and what they used."""

    name: str
    phase: StepPhase
    attempts: int | None = None
    execution: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    next_attempt_time: str | None = None
    tokens: int | None = None
    cost_usd: USD | None = Field(default=None, alias="costUSD")
    message: str | None = None


class RunTotals(CRModel):
    tokens: int = 0
    cost_usd: USD = Field(default="0", alias="costUSD")


class RunCondition(CRModel):
    """A WorkflowRun's condition (its CRD has no observedGeneration: the run's spec does not change)."""

    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str


class WorkflowRunStatus(CRModel):
    phase: RunPhase | None = None
    reason: str | None = None
    message: str | None = None
    progress: str | None = None
    workflow_generation: int | None = None
    start_time: str | None = None
    completion_time: str | None = None
    steps: list[StepStatus] = Field(default_factory=list, max_length=50)
    totals: RunTotals | None = None
    conditions: list[RunCondition] = Field(default_factory=list)


class SkippedTimes(SkippedRuns):
    """A Workflow schedule's skipped fire times, and why."""

    reason: SkipReason | None = None


class WorkflowScheduleState(ScheduleState):
    last_skipped: SkippedTimes | None = None


class LastRun(CRModel):
    """The run of the Workflow that ended last (status.lastRun)."""

    name: str
    phase: RunPhase | None = None
    completion_time: str | None = None
    cost_usd: USD | None = Field(default=None, alias="costUSD")


class WorkflowStatus(CRModel):
    conditions: list[Condition] = Field(default_factory=list)
    upcoming_runs: list[str] | None = Field(default=None, max_length=5)
    last_schedule_time: str | None = None
    schedule_state: WorkflowScheduleState | None = None
    last_run: LastRun | None = None
