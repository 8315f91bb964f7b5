"""The condition types and reasons the operator writes on Agents and Executions.

`status.reason` of an Execution, and the `reason` of every condition the operator sets, is a `Reason`;
the `type` of each condition it sets is a `ConditionType`. Reasons the runtime reports by exit code
(agentry_common.exitcodes.REASONS) are members too, since the operator writes them as they are.
Kubernetes' own reasons that the operator only reads (a Job's `BackoffLimitExceeded`, a pod's
`ErrImagePull`) are not here: they stay named in the module that reads them.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"  # Agent: its spec is valid and its schedule object is in place
    STARTED = "Started"  # Execution: its pod has started
    SUCCEEDED = "Succeeded"  # Execution: True/False once it ended, Unknown before
    BUDGET_EXCEEDED = "BudgetExceeded"  # Execution (governed): admission held or refused the run
    BUDGET_THROTTLED = "BudgetThrottled"  # Execution (governed): the run's calls use a cheaper model
    SCHEDULE_PAUSED = "SchedulePaused"  # Agent: the operator suspended its schedule (pauseOnFailure)
    POOLED = "Pooled"  # Execution: started in a warm pod of a pool (True), or as a Job and why (False)


class Reason(StrEnum):
    # An Agent's Ready condition.
    RECONCILED = "Reconciled"
    INVALID_SPEC = "InvalidSpec"
    CLOUD_SCHEDULER_NOT_CONFIGURED = "CloudSchedulerNotConfigured"
    CLOUD_SCHEDULER_ERROR = "CloudSchedulerError"
    CLOUD_SCHEDULER_UNAVAILABLE = "CloudSchedulerUnavailable"

    # An Agent's schedule: SchedulePaused, and the events of its catch-up (docs/operator.md).
    CONSECUTIVE_FAILURES = "ConsecutiveFailures"
    SCHEDULE_RESUMED = "ScheduleResumed"
    CATCHUP_STARTED = "CatchupStarted"
    CATCHUP_SKIPPED = "CatchupSkipped"
    BACKFILL_STARTED = "BackfillStarted"

    # An Execution on its way (Pending, Running, WaitingApproval).
    PENDING = "Pending"
    RUNNING = "Running"
    POD_STARTED = "PodStarted"
    UNSCHEDULABLE = "Unschedulable"
    EVICTED = "Evicted"
    RESUMED = "Resumed"
    AGENT_NOT_FOUND = "AgentNotFound"
    QUOTA_EXCEEDED = "QuotaExceeded"
    # The run gate (docs/security.md, "Who may start a run"): the owner's quotas and ownership.
    CONCURRENT_RUNS_QUOTA = "ConcurrentRunsQuota"  # waits Pending until one of the owner's runs ends
    RUNS_PER_DAY_QUOTA = "RunsPerDayQuota"  # ends Failed: the owner's runs of this UTC day are used up
    OWNER_MISMATCH = "OwnerMismatch"  # ends Failed: the run names another owner's Agent
    POLICY_VIOLATION = "PolicyViolation"  # ends Failed: the Agent or the run breaks the Agent policy now
    WORKSPACE_BUSY = "WorkspaceBusy"  # waits Pending until the run using the Agent's kept workspace ends
    # The Pooled condition (docs/runs.md, "Warm pool"): claimed from a pool, or why the run has a Job.
    CLAIMING = "Claiming"  # a warm pod recorded, the claim not delivered yet (a restart finishes it)
    CLAIMED = "Claimed"
    NO_POOL = "NoPool"  # no pool serves the run's profile (image, resources, runtime class) there
    POOL_EMPTY = "PoolEmpty"  # its pool had no warm pod ready
    NEEDS_JOB = "NeedsJob"  # the run needs what a warm pod cannot get at claim (the message says what)
    CLAIM_FAILED = "ClaimFailed"  # the warm pods tried were gone or refused the claim

    # How an Execution ended, as the operator sees it.
    NO_REPORT = "NoReport"
    POD_FAILED = "PodFailed"
    OOM_KILLED = "OOMKilled"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    JOB_DELETED = "JobDeleted"
    INVALID_JOB = "InvalidJob"
    INVALID_AGENT = "InvalidAgent"
    CANCELLED = "Cancelled"
    APPROVAL_DENIED = "ApprovalDenied"
    APPROVAL_TIMED_OUT = "ApprovalTimedOut"
    APPROVAL_STATE_INVALID = "ApprovalStateInvalid"  # the paused state did not verify (statesig.py)
    MISSED_STARTING_DEADLINE = "MissedStartingDeadline"
    CONCURRENCY_FORBIDDEN = "ConcurrencyForbidden"
    # The kubelet evicted the pod for its own storage: an emptyDir sizeLimit or ephemeral-storage limit.
    STORAGE_LIMIT_EXCEEDED = "StorageLimitExceeded"

    # How an Execution ended, as its runtime reported it (agentry_common.exitcodes.REASONS).
    COMPLETED = "Completed"
    RUNTIME_ERROR = "RuntimeError"
    CONFIGURATION_ERROR = "ConfigurationError"
    MAX_TURNS_REACHED = "MaxTurnsReached"
    MAX_TOKENS_REACHED = "MaxTokensReached"
    MAX_COST_REACHED = "MaxCostReached"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    PROVIDERS_FAILED = "ProvidersFailed"
    APPROVAL_REQUIRED = "ApprovalRequired"
    PID_LIMIT_EXCEEDED = "PIDLimitExceeded"
    WORKSPACE_FULL = "WorkspaceFull"  # a kept workspace grew past spec.workspace.size
    CONTEXT_WINDOW_EXCEEDED = "ContextWindowExceeded"
    RESUME_LIMIT_REACHED = "ResumeLimitReached"
    INTERRUPTED = "Interrupted"  # a pod stopped at a checkpoint; the next one resumes the run
    FOLLOW_UP_REFUSED = "FollowUpRefused"  # spec.parentRef names a run this one may not continue

    # Governance: the LLM gateway's admission (docs/governance.md).
    ADMITTED = "Admitted"
    WITHIN_BUDGET = "WithinBudget"
    BUDGET_WAIT = "BudgetWait"
    BUDGET_EXCEEDED = "BudgetExceeded"
    GATEWAY_UNAVAILABLE = "GatewayUnavailable"
    ADMISSION_FAILED = "AdmissionFailed"
    NORMAL_ZONE = "NormalZone"
    THROTTLE_ZONE = "ThrottleZone"
    CRITICAL_ZONE = "CriticalZone"
    EXHAUSTED_ZONE = "ExhaustedZone"
