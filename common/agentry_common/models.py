"""Pydantic models of the Agent and Execution custom resources (agentry.dev/v1alpha1).

The CRD YAML in manifests/crds/ is the API server's contract; these models are the Python view of the
same schema, used by the operator, the API and the workspace runtime. A unit test walks both and fails
if a field exists in one and not in the other.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .outputs import NAME_PATTERN as OUTPUT_NAME


class CRModel(BaseModel):
    """Base: camelCase on the wire, snake_case in Python; unknown fields are an error."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False)

    def wire(self) -> dict[str, Any]:
        """The object as it appears in a Kubernetes manifest (camelCase, no unset defaults)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def patch(self) -> dict[str, Any]:
        """The object as a merge patch: only the fields set (camelCase); one set to None deletes it."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


USD = Annotated[str, Field(pattern=r"^\d{1,6}(\.\d{1,6})?$")]


def usd(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class Provider(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


class Tool(StrEnum):
    SHELL = "shell"
    PYTHON = "python"
    FILES = "files"
    HTTP = "http"


class Risk(StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


class Runtime(StrEnum):
    AGENTRY = "agentry"
    CLAUDE_CODE = "claude-code"


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class ScheduleBackend(StrEnum):
    CRONJOB = "CronJob"
    CLOUD_SCHEDULER = "CloudScheduler"
    OPERATOR = "Operator"  # the operator's own timers (no CronJob, no tick pod)


class Trigger(StrEnum):
    MANUAL = "Manual"
    SCHEDULE = "Schedule"
    API = "API"
    WEBHOOK = "Webhook"  # a Trigger's delivery (agentry_common.triggers): its input is untrusted


class Phase(StrEnum):
    PENDING = "Pending"
    WAITING_APPROVAL = "WaitingApproval"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.SKIPPED})


class ModelRef(CRModel):
    provider: Provider = Provider.ANTHROPIC
    name: str = Field(min_length=1, max_length=128)
    base_url: str | None = Field(default=None, alias="baseURL", max_length=512)

    @property
    def label(self) -> str:
        """provider/name, the form of status.model and of AGENTRY_DEFAULT_MODEL."""
        return f"{self.provider.value}/{self.name}"


class ModelSpec(ModelRef):
    fallbacks: list[ModelRef] = Field(default_factory=list, max_length=5)


# The installation default model (used when an Agent sets no spec.model) unless the operator is given
# another one (AGENTRY_DEFAULT_MODEL, chart value operator.defaultModel). A current model of the pricing
# table, not one the Anthropic SDK reports as deprecated (tests/unit/test_model_names.py).
DEFAULT_MODEL = "anthropic/claude-sonnet-4-6"
DEFAULT_MODEL_ENV = "AGENTRY_DEFAULT_MODEL"


def parse_model(text: str) -> ModelSpec:
    """A model as provider/name (a bare name: provider anthropic) as a ModelSpec; ValueError if malformed."""
    value = text.strip()
    provider, sep, name = value.partition("/")
    if not sep:
        provider, name = Provider.ANTHROPIC.value, value
    if provider not in {p.value for p in Provider}:
        raise ValueError(
            f"model {text!r}: unknown provider {provider!r} (expected provider/name, provider one of "
            f"{', '.join(p.value for p in Provider)})"
        )
    try:
        return ModelSpec(provider=Provider(provider), name=name)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"model {text!r}: expected provider/name with a name of 1-128 characters") from exc


class PauseOnFailure(CRModel):
    consecutive_failures: int = Field(ge=1, le=100)


class Backfill(CRModel):
    """A time range whose fire times the operator starts once (at most MAX_BACKFILL_RUNS)."""

    start: str = Field(max_length=64)
    end: str = Field(max_length=64)


class ScheduleSpec(CRModel):
    cron: str = Field(min_length=1, max_length=128)
    time_zone: str = Field(default="UTC", max_length=64)
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=86400)
    suspend: bool = False
    backend: ScheduleBackend = ScheduleBackend.CRONJOB
    input: str | None = Field(default=None, max_length=65536)
    # Bounded: a guest's schedule must not turn downtime into a burst of runs (docs/operator.md).
    catchup_window_seconds: int | None = Field(default=None, ge=60, le=86400)
    max_catchup_runs: int = Field(default=3, ge=1, le=10)
    jitter_seconds: int = Field(default=0, ge=0, le=600)
    pause_on_failure: PauseOnFailure | None = None
    backfill: Backfill | None = None


class BudgetSpec(CRModel):
    max_turns: int = Field(default=30, ge=1, le=1000)
    max_tokens_per_run: int | None = Field(default=None, ge=1000, le=100_000_000)
    max_cost_per_run_usd: USD | None = Field(default=None, alias="maxCostPerRunUSD")


class PromptCachingSpec(CRModel):
    """Prompt-cache breakpoints on the runtime's model requests (runtime agentry)."""

    enabled: bool = True
    ttl: Literal["5m", "1h"] = "5m"


class Compaction(StrEnum):
    AUTO = "auto"
    OFF = "off"


class ContextSpec(CRModel):
    """What the runtime does when a conversation nears its model's context window."""

    compaction: Compaction = Compaction.AUTO
    # Compact when the next request would fill this share of the window.
    threshold_percent: int = Field(default=80, ge=50, le=95)


class DoubleTexting(StrEnum):
    """What a steering message does while an earlier one waits undelivered."""

    QUEUE = "queue"  # delivered after it, in order
    REPLACE = "replace"  # supersedes the waiting ones
    REJECT = "reject"  # refused (409) until the waiting one is delivered


class OnInterrupt(StrEnum):
    WAIT = "wait"  # the run waits, checkpointed, for the next message (up to waitSeconds)
    END = "end"  # the run ends Succeeded with what it has


class SteeringSpec(CRModel):
    """Messages sent to a Running run (runtime agentry, with the gateway's checkpoints on)."""

    pending: DoubleTexting = DoubleTexting.QUEUE
    on_interrupt: OnInterrupt = OnInterrupt.END
    # How long an interrupted run waits for a message before it ends (on_interrupt wait).
    wait_seconds: int = Field(default=900, ge=10, le=86400)


class MemorySpec(CRModel):
    """An owner-scoped store kept across runs of one Agent, offered to the model as the memory tool."""

    enabled: bool = False
    max_entries: int = Field(default=100, ge=1, le=1000)


class WorkspaceSpec(CRModel):
    """/workspace kept between runs on a PersistentVolumeClaim owned by the Agent."""

    persistent: bool = False
    size: str = Field(default="1Gi", pattern=r"^[0-9]+(Mi|Gi)$")
    # None: the cluster's default StorageClass (the chart's workspaceStorageClass when set).
    storage_class_name: str | None = Field(default=None, max_length=253)


class HttpSpec(CRModel):
    allowed_hosts: list[str] = Field(default_factory=list, max_length=100)


class OnTimeout(StrEnum):
    """What happens to an approval nobody decided within timeoutSeconds (docs/events.md)."""

    DENY = "Deny"
    ESCALATE = "Escalate"


class Escalation(CRModel):
    """Escalate: the Agent owner's notification subscription told, and how much longer it may decide."""

    subscription: str = Field(min_length=1, max_length=64, pattern=r"^sub-[a-z0-9]+$")
    extra_seconds: int = Field(default=3600, ge=60, le=7 * 86400)


class ApprovalSpec(CRModel):
    required_for: list[Risk] = Field(default_factory=lambda: [Risk.RED])
    red_tools: list[Tool] = Field(default_factory=list)
    timeout_seconds: int = Field(default=3600, ge=60, le=7 * 86400)
    on_timeout: OnTimeout = OnTimeout.DENY
    escalation: Escalation | None = None

    @model_validator(mode="after")
    def _escalation_named(self) -> ApprovalSpec:
        if self.on_timeout == OnTimeout.ESCALATE and self.escalation is None:
            raise ValueError("approval.onTimeout Escalate needs approval.escalation.subscription")
        return self

    @property
    def deadline_seconds(self) -> int:
        """From the request to the denial: the timeout, plus the escalation's time when it escalates."""
        extra = (
            self.escalation.extra_seconds if self.on_timeout == OnTimeout.ESCALATE and self.escalation else 0
        )
        return self.timeout_seconds + extra

    # Shell and python are RED when the Agent also holds secrets or network access (they could send the
    # secrets out); true keeps them YELLOW (docs/mcp.md, "Shell and python with access").
    trust_code_with_access: bool = False


ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"
# The model sees an MCP tool as mcp__<server>__<tool>; providers accept names of at most 64 characters.
MCP_TOOL_PREFIX = "mcp__"
MCP_SEPARATOR = "__"
MCP_TOOL_NAME_MAX = 64


class McpTransport(StrEnum):
    STREAMABLE_HTTP = "StreamableHTTP"
    SSE = "SSE"


class McpValue(CRModel):
    """A header of a remote MCP server or a variable of a stdio one: a plain value, or the value of one
    of spec.secrets (by its variable name), optionally after a prefix such as "Bearer "."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    value: str | None = Field(default=None, max_length=4096)
    secret_env: str | None = Field(default=None, pattern=ENV_NAME, max_length=128)
    prefix: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _one_source(self) -> McpValue:
        if (self.value is None) == (self.secret_env is None):
            raise ValueError(f"{self.name}: set exactly one of value and secretEnv")
        if self.value is not None and looks_like_secret(self.value):
            raise ValueError(f"{self.name}: looks like an API key; put it in a Secret and use secretEnv")
        return self


class McpServerSpec(CRModel):
    """One MCP server whose tools the agent may use: remote (url) or started in the run's sandbox
    (command, from the image)."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,22}[a-z0-9])?$")
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    transport: McpTransport | None = None  # a url server's; unset: StreamableHTTP
    headers: list[McpValue] = Field(default_factory=list, max_length=16)
    command: list[str] = Field(default_factory=list, max_length=32)
    env: list[McpValue] = Field(default_factory=list, max_length=32)
    # The allow-list: exact tool names or patterns (fnmatch, "*" for every tool the server has).
    tools: list[str] = Field(min_length=1, max_length=128)
    # Per tool name: the risk to use instead of the one the server's annotations imply.
    risk: dict[str, Risk] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _remote_or_stdio(self) -> McpServerSpec:
        if (self.url is None) == (not self.command):
            raise ValueError(f"mcpServers {self.name}: set exactly one of url and command")
        if self.url is None and (self.headers or self.transport is not None):
            raise ValueError(f"mcpServers {self.name}: headers and transport are for a url server")
        if self.url is not None and self.env:
            raise ValueError(f"mcpServers {self.name}: env is for a command server (remote: headers)")
        return self

    def secret_envs(self) -> list[str]:
        return [v.secret_env for v in (*self.headers, *self.env) if v.secret_env is not None]


class SecretKeyRef(CRModel):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class SecretSpec(CRModel):
    env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=128)
    secret_key_ref: SecretKeyRef | None = None
    secret_manager: str | None = Field(
        default=None, pattern=r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$"
    )


class ResourceSpec(CRModel):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class HistoryLimits(CRModel):
    succeeded: int = Field(default=10, ge=0, le=1000)
    failed: int = Field(default=5, ge=0, le=1000)


class AgentSpec(CRModel):
    description: str = Field(default="", max_length=1024)
    instructions: str = Field(min_length=1, max_length=65536)
    runtime: Runtime = Runtime.AGENTRY
    # None: the installation's default model (the operator fills it in for each run).
    model: ModelSpec | None = None
    tools: list[Tool] = Field(default_factory=list)
    http: HttpSpec = Field(default_factory=HttpSpec)
    schedule: ScheduleSpec | None = None
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    prompt_caching: PromptCachingSpec = Field(default_factory=PromptCachingSpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    timeout_seconds: int = Field(default=1800, ge=10, le=86400)
    retries: int = Field(default=0, ge=0, le=10)
    # Budget priority of its runs (0..10, high >= 8, low <= 3): the gateway's admission and zones.
    priority: int = Field(default=5, ge=0, le=10)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    secrets: list[SecretSpec] = Field(default_factory=list, max_length=32)
    mcp_servers: list[McpServerSpec] = Field(default_factory=list, max_length=10)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    # The run pod's RuntimeClass (`gvisor`, a Kata class): a stronger sandbox than the node's default
    # runtime. None: the default (docs/security.md, "A stronger sandbox").
    runtime_class_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
    )
    history_limits: HistoryLimits = Field(default_factory=HistoryLimits)
    steering: SteeringSpec = Field(default_factory=SteeringSpec)
    memory: MemorySpec = Field(default_factory=MemorySpec)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, tools: list[Tool]) -> list[Tool]:
        if len(set(tools)) != len(tools):
            raise ValueError("tools must not repeat")
        return tools

    @model_validator(mode="after")
    def _mcp_rules(self) -> AgentSpec:
        """The CRD's CEL rules on spec.mcpServers, for callers that validate without the API server."""
        if self.memory.enabled and self.runtime is not Runtime.AGENTRY:
            raise ValueError("memory: only runtime agentry offers the memory tool")
        if not self.mcp_servers:
            return self
        if self.runtime is not Runtime.AGENTRY:
            raise ValueError("mcpServers: only runtime agentry runs MCP servers")
        names = [s.name for s in self.mcp_servers]
        if len(set(names)) != len(names):
            raise ValueError("mcpServers: names must not repeat")
        envs = {s.env for s in self.secrets}
        for server in self.mcp_servers:
            for env in server.secret_envs():
                if env not in envs:
                    raise ValueError(f"mcpServers {server.name}: secretEnv {env} is not a spec.secrets env")
        return self


class AgentRef(CRModel):
    name: str = Field(min_length=1, max_length=253)


class ApprovalDecision(CRModel):
    id: str = Field(max_length=128)
    approved: bool
    decided_by: str | None = Field(default=None, max_length=253)
    reason: str | None = Field(default=None, max_length=1024)


class ParentRef(CRModel):
    """The finished Execution (same namespace, same Agent, same owner) a follow-up continues."""

    name: str = Field(min_length=1, max_length=253)


class ExecutionSpec(CRModel):
    agent_ref: AgentRef
    input: str | None = Field(default=None, max_length=65536)
    trigger: Trigger = Trigger.MANUAL
    correlation_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    scheduled_time: str | None = None
    # Overrides the Agent's spec.priority for this run.
    priority: int | None = Field(default=None, ge=0, le=10)
    cancel: bool = False
    approvals: list[ApprovalDecision] = Field(default_factory=list, max_length=100)
    outputs: list[Annotated[str, Field(pattern=OUTPUT_NAME)]] = Field(default_factory=list, max_length=10)
    # A follow-up: this run starts from the whole conversation of `parentRef` and `input` is the next
    # user message. Its own budget, usage, approvals and quota.
    parent_ref: ParentRef | None = None


class Condition(CRModel):
    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class Usage(CRModel):
    input_tokens: int = 0  # every input token, cached or not
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to it
    cost_usd: USD = Field(default="0", alias="costUSD")
    # What the same calls would have cost with no caching (the saving is the difference).
    uncached_cost_usd: USD | None = Field(default=None, alias="uncachedCostUSD")
    model: str | None = None
    turns: int | None = None


class Result(CRModel):
    summary: str = ""
    truncated: bool = False
    stop_reason: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)


class CheckpointStatus(CRModel):
    """The run's journal (agentry_common.checkpoints), as its last pod reported it."""

    entries: int = 0  # the journal's last seq
    resumes: int = 0  # pods that continued the run from its journal after a lost one
    interrupted_calls: int = 0  # tool calls a lost pod started whose result was never recorded
    last_at: str | None = None


class PendingApproval(CRModel):
    id: str
    tool: str | None = None
    summary: str | None = None
    input: str | None = None  # the complete tool input (JSON), cut at 16 KiB
    input_truncated: str | None = None  # where and why `input` was cut
    risk: str | None = None
    requested_at: str | None = None
    expires_at: str | None = None


class McpServerStatus(CRModel):
    name: str
    tools: dict[str, Risk] = Field(default_factory=dict)
    error: str | None = None


class McpStatus(CRModel):
    execution: str | None = None
    servers: list[McpServerStatus] = Field(default_factory=list)


class ExecutionStatus(CRModel):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    correlation_id: str | None = None
    job_name: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    duration: str | None = None
    attempts: int | None = None
    result: Result | None = None
    usage: Usage | None = None
    mcp: McpStatus | None = None
    approval: PendingApproval | None = None
    checkpoint: CheckpointStatus | None = None


class LastExecution(CRModel):
    name: str
    phase: Phase | None = None
    start_time: str | None = None
    completion_time: str | None = None


class Totals(CRModel):
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: USD = Field(default="0", alias="costUSD")


class Archived(CRModel):
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    missed_runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: USD = Field(default="0", alias="costUSD")
    names: list[str] = Field(default_factory=list)


class SkippedRuns(CRModel):
    count: int = 0
    first: str | None = None
    last: str | None = None


class ScheduleState(CRModel):
    """The operator's bookkeeping of a schedule (catch-up watermark, failure streak)."""

    signature: str = ""
    since: str | None = None
    through: str | None = None
    skipped_runs: int = 0
    last_skipped: SkippedRuns | None = None
    consecutive_failures: int = 0
    backfilled: str | None = None


class AgentStatus(CRModel):
    observed_generation: int | None = None
    model: str | None = Field(default=None, max_length=256)
    conditions: list[Condition] = Field(default_factory=list)
    last_execution: LastExecution | None = None
    last_schedule_time: str | None = None
    next_run_time: str | None = None
    missed_runs: int | None = None
    totals: Totals | None = None
    archived: Archived | None = None
    schedule_ref: str | None = None
    mcp: McpStatus | None = None
    upcoming_runs: list[str] | None = Field(default=None, max_length=5)
    schedule_state: ScheduleState | None = None


_SECRETISH = re.compile(r"(sk-ant-[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9]{32,}|AIza[0-9A-Za-z_-]{35})")
# Every match starts with one of these (tested): a text holding none needs no regex scan, which is
# several times slower than looking for them on text of a few KB.
_SECRETISH_PREFIXES = ("sk-", "AIza")
# One search, not any() over the prefixes: this runs for every string the runtime redacts.
_SECRETISH_PREFIX = re.compile("|".join(map(re.escape, _SECRETISH_PREFIXES)))


def may_hold_secret(text: str) -> bool:
    """False when _SECRETISH cannot match `text` (it holds none of the prefixes)."""
    return _SECRETISH_PREFIX.search(text) is not None


def looks_like_secret(text: str) -> bool:
    """True if text contains something shaped like a provider API key (kept out of specs)."""
    return may_hold_secret(text) and bool(_SECRETISH.search(text))
