"""Public request and response models. Inputs forbid unknown fields: no mass assignment of owner,
status, namespace or image; the owner always comes from the authenticated user."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentry_common.models import AgentSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIn(Strict):
    """An agent definition as a person writes it. `spec` is the Agent CR's spec."""

    name: str = Field(pattern=NAME_PATTERN, description="Display name (letters, digits, space . _ -).")
    spec: AgentSpec


class RunIn(Strict):
    input: str | None = Field(default=None, max_length=65536, description="Task text for this run.")


class DecisionIn(Strict):
    approved: bool
    reason: str | None = Field(default=None, max_length=1024)


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 ._-]+$")
    expiresAt: dt.datetime | None = Field(
        default=None,
        description="When the token stops working (RFC 3339 with a zone; in the future, at most "
        "AGENTRY_TOKEN_MAX_DAYS ahead). Unset: it works until revoked.",
    )


class TokenLoginIn(Strict):
    token: str = Field(min_length=8, max_length=512)


class SyncState(BaseModel):
    state: Literal["Synced", "Pending", "Error"]
    message: str = ""
    attempts: int = 0
    updatedAt: str | None = None


class AgentStatusOut(BaseModel):
    ready: str | None = None
    reason: str | None = None
    message: str | None = None
    nextRunTime: str | None = None
    upcomingRuns: list[str] | None = Field(default=None, description="The schedule's next fire times (UTC).")
    model: str | None = Field(
        default=None,
        description="The model runs use (provider/name): spec.model, or the installation's default.",
    )
    lastExecution: dict[str, Any] | None = None
    totals: dict[str, Any] | None = None


class AgentOut(BaseModel):
    id: str
    name: str
    description: str
    source: Literal["api", "cluster"]
    editable: bool
    spec: dict[str, Any]
    status: AgentStatusOut
    sync: SyncState
    createdAt: str
    updatedAt: str


class AgentList(BaseModel):
    nextCursor: str | None = None
    items: list[AgentOut]


class RunAccepted(BaseModel):
    execution: str
    correlationId: str
    status: str = "accepted"
    url: str


class ExecutionOut(BaseModel):
    id: str
    agentId: str
    trigger: str
    correlationId: str | None = None
    input: str | None = None
    phase: str
    reason: str | None = None
    message: str | None = None
    startTime: str | None = None
    completionTime: str | None = None
    duration: str | None = None
    attempts: int | None = None
    result: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    trial: bool = Field(
        default=False, description="A draft tried from the chat designer (its Agent is gone)."
    )
    parent: str | None = Field(
        default=None, description="The run this one continues (spec.parentRef.name), for a follow-up."
    )
    checkpoint: dict[str, Any] | None = Field(
        default=None, description="status.checkpoint: {entries, resumes, interruptedCalls, lastAt}."
    )
    createdAt: str
    updatedAt: str


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    nextCursor: str | None = None


class Accepted(BaseModel):
    status: str = "accepted"
    id: str
    correlationId: str | None = None


class LogsOut(BaseModel):
    execution: str
    source: Literal["pod", "events"]
    pod: str | None = None
    note: str | None = None
    lines: list[str]


class LlmCallOut(BaseModel):
    """One call through the LLM gateway, from its record (`llmCalls`, docs/governance.md)."""

    id: str
    time: str | None = Field(description="When the call ended (ISO-8601 UTC).")
    outcome: str = Field(description="ok, refused, failed, broken, cancelled, …")
    protocol: str | None = None
    requestedModel: str | None = None
    model: str | None = Field(default=None, description="The model that answered.")
    channel: str | None = None
    inputTokens: int = Field(default=0, description="Every input token, cached or not.")
    cacheReadTokens: int = Field(default=0, description="Of inputTokens: read from the prompt cache.")
    cacheWriteTokens: int = Field(default=0, description="Of inputTokens: written to the prompt cache.")
    cacheNote: str | None = Field(
        default=None, description="Why the hop that answered was sent no cache breakpoints, when it was not."
    )
    outputTokens: int = 0
    costUSD: str = Field(default="0", description="What the call was charged.")
    latencyMs: float | None = None
    fallbacks: int = 0
    fallbackPath: list[str] = Field(default_factory=list, description='"channel:model -> channel:model"')
    retries: int = 0
    zone: str | None = Field(default=None, description="Budget zone: normal, throttle, critical, exhausted.")
    decision: str | None = Field(default=None, description="allow, throttle (cheaper model), refuse.")
    decisionReason: str | None = None
    route: str | None = Field(
        default=None, description="Why complexity-based routing (model `auto`) chose the model, when it did."
    )


class LlmCallTotals(BaseModel):
    calls: int
    inputTokens: int
    outputTokens: int
    tokens: int
    costUSD: str
    fallbacks: int
    retries: int


class LlmCallsOut(BaseModel):
    execution: str
    items: list[LlmCallOut] = Field(description="Oldest first.")
    totals: LlmCallTotals = Field(description="Over all the run's calls, `items` or not.")
    truncated: bool = Field(description="True when the run made more calls than are returned.")


class BudgetDecisionOut(LlmCallOut):
    """A call the budget did not simply admit: throttled to a cheaper model, made to wait, refused."""

    execution: str | None = Field(default=None, description="The run (Execution name); none for chat.")
    agent: str | None = None


class BudgetDecisionsOut(BaseModel):
    items: list[BudgetDecisionOut] = Field(description="Newest first.")
    nextCursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next (older) page; none on the last page."
    )


class ApprovalOut(BaseModel):
    id: str
    execution: str
    agentId: str
    tool: str | None = None
    summary: str | None = None
    input: str | None = Field(
        default=None, description="The complete tool input (JSON), as the operator read it."
    )
    inputTruncated: str | None = Field(default=None, description="Set when `input` was cut, saying where.")
    risk: str | None = None
    state: Literal["pending", "approved", "denied", "expired"]
    requestedAt: str | None = None
    expiresAt: str | None = None
    decidedBy: str | None = None
    decidedAt: str | None = None
    reason: str | None = None
    correlationId: str | None = None


class ApprovalList(BaseModel):
    nextCursor: str | None = None
    items: list[ApprovalOut]


class TokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    createdAt: str
    lastUsedAt: str | None = None
    expiresAt: str | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored.")


class TokenList(BaseModel):
    nextCursor: str | None = None
    items: list[TokenOut]


class Me(BaseModel):
    id: str
    kind: str
    via: str


class UsageTotals(BaseModel):
    """What every usage row sums (the total, per agent, per model, per bucket). Input splits into
    cache reads, cache writes and uncached input; a run that reported no cache fields counts all its
    input as uncached and saves nothing."""

    executions: int
    inputTokens: int = Field(description="Every input token, cached or not.")
    outputTokens: int
    cacheReadTokens: int = Field(description="Of inputTokens: read from the provider's prompt cache.")
    cacheWriteTokens: int = Field(description="Of inputTokens: written to the provider's prompt cache.")
    uncachedInputTokens: int = Field(description="Of inputTokens: neither read from nor written to it.")
    costUSD: str
    uncachedCostUSD: str = Field(
        description="What the same runs would have cost without prompt caching (a run that did not "
        "report it counts at its cost)."
    )
    savingUSD: str = Field(
        description="uncachedCostUSD - costUSD: negative when cache writes cost more than reads saved."
    )
    savingPercent: float = Field(description="savingUSD as a percentage of uncachedCostUSD, 1 decimal.")


class UsageBucket(UsageTotals):
    start: str


class UsageAgent(UsageTotals):
    agentId: str
    succeeded: int
    failed: int


class UsageModel(UsageTotals):
    model: str = Field(description="The model the run reported (`unknown` when none).")


class UsageOut(UsageTotals):
    window: str
    since: str
    agents: list[UsageAgent]
    buckets: list[UsageBucket]
    models: list[UsageModel] = Field(default_factory=list, description="Per model, costliest first.")


class Problem(BaseModel):
    detail: Any
