"""Exit codes of the workspace runtime: the contract between the runtime and the operator.

Each stop reason has its own code so the operator can explain a run without reading its logs, and so
the Job's podFailurePolicy can tell retryable failures from final ones.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    COMPLETED = 0
    INTERNAL_ERROR = 1
    CONFIG_ERROR = 2
    MAX_TURNS = 10
    MAX_TOKENS = 11
    MAX_COST = 12
    DEADLINE = 13
    BUDGET_EXCEEDED = 14
    PID_LIMIT = 15
    CONTEXT_OVERFLOW = 16
    RESUME_LIMIT = 17
    WORKSPACE_FULL = 18  # a kept workspace grew past spec.workspace.size
    PROVIDERS_FAILED = 20
    APPROVAL_REQUIRED = 30
    # SIGTERM (pod deleted, node drained, evicted): the run stopped at a checkpoint and a new pod of
    # the same Job resumes it. Not a failure: the Job's podFailurePolicy does not count it as a retry.
    INTERRUPTED = 75


# Retrying cannot change these outcomes: the Job fails at once instead of using its backoffLimit.
FINAL = frozenset(
    {
        ExitCode.CONFIG_ERROR,
        ExitCode.MAX_TURNS,
        ExitCode.MAX_TOKENS,
        ExitCode.MAX_COST,
        ExitCode.DEADLINE,
        ExitCode.BUDGET_EXCEEDED,
        ExitCode.PID_LIMIT,
        ExitCode.CONTEXT_OVERFLOW,
        ExitCode.RESUME_LIMIT,
        ExitCode.WORKSPACE_FULL,
        ExitCode.PROVIDERS_FAILED,
        ExitCode.APPROVAL_REQUIRED,
    }
)

# Reason (CamelCase, for Execution status) and a sentence for people, per exit code.
REASONS: dict[int, tuple[str, str]] = {
    ExitCode.COMPLETED: ("Completed", "the agent finished its task"),
    ExitCode.INTERNAL_ERROR: ("RuntimeError", "the agent runtime crashed; see the run's logs"),
    ExitCode.CONFIG_ERROR: (
        "ConfigurationError",
        "the run is misconfigured (e.g. LLM_REQUIRED: no provider key)",
    ),
    ExitCode.MAX_TURNS: ("MaxTurnsReached", "the agent used all of spec.budget.maxTurns"),
    ExitCode.MAX_TOKENS: ("MaxTokensReached", "the agent used all of spec.budget.maxTokensPerRun"),
    ExitCode.MAX_COST: ("MaxCostReached", "the agent reached spec.budget.maxCostPerRunUSD"),
    ExitCode.DEADLINE: ("DeadlineExceeded", "the agent ran out of spec.timeoutSeconds"),
    ExitCode.BUDGET_EXCEEDED: ("BudgetExceeded", "the LLM gateway refused further calls: a budget is spent"),
    ExitCode.PID_LIMIT: (
        "PIDLimitExceeded",
        "a tool used up the pod's process limit (podPidsLimit: a fork bomb?); its processes were killed",
    ),
    ExitCode.CONTEXT_OVERFLOW: (
        "ContextWindowExceeded",
        "the conversation did not fit the model's context window even after compaction (spec.context)",
    ),
    ExitCode.RESUME_LIMIT: (
        "ResumeLimitReached",
        "the run's pod was lost again and again at the same step; it was not resumed once more",
    ),
    ExitCode.WORKSPACE_FULL: (
        "WorkspaceFull",
        "the kept workspace holds more than spec.workspace.size; the run was stopped",
    ),
    ExitCode.INTERRUPTED: (
        "Interrupted",
        "the run's pod stopped; a new pod resumes the run from its last checkpoint",
    ),
    ExitCode.PROVIDERS_FAILED: (
        "ProvidersFailed",
        "every LLM provider failed after retries and fallbacks",
    ),
    ExitCode.APPROVAL_REQUIRED: ("ApprovalRequired", "a risky action waits for a human decision"),
}
