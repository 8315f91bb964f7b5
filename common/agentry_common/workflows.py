"""Contracts of the Workflow and WorkflowRun custom resources (docs/workflows.md).

A Workflow is a graph of named steps, each an ordinary Execution of an Agent; a WorkflowRun is one
run of it. The operator labels each step's Execution with its run, step and attempt, and owns it by
the WorkflowRun, so `kubectl get ex -l agentry.dev/workflow-run=R` lists a run's steps.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from .constants import GROUP

WORKFLOW_KIND: Final = "Workflow"
WORKFLOW_PLURAL: Final = "workflows"
WORKFLOW_RUN_KIND: Final = "WorkflowRun"
WORKFLOW_RUN_PLURAL: Final = "workflowruns"

# Labels on each step's Execution.
LABEL_WORKFLOW: Final = f"{GROUP}/workflow"
LABEL_WORKFLOW_RUN: Final = f"{GROUP}/workflow-run"
LABEL_WORKFLOW_STEP: Final = f"{GROUP}/workflow-step"
LABEL_WORKFLOW_ATTEMPT: Final = f"{GROUP}/workflow-attempt"

# Longest object name that also fits a label value (step Executions name their Jobs' labels).
MAX_LABEL_NAME: Final = 63


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
