"""What Agentry keeps in Firestore: the collection names, and the one record two components share.

The API owns users, sessions, agents, runs, events, approvals and conversations; the LLM gateway
owns the budget counters and writes one `llmCalls` document per call, which the API reads back
(docs/governance.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Collection(StrEnum):
    USERS = "users"
    TOKENS = "tokens"
    AGENTS = "agents"
    EXECUTIONS = "executions"
    EVENTS = "events"
    EVENT_KEYS = "eventKeys"
    APPROVALS = "approvals"
    CONVERSATIONS = "conversations"
    SESSIONS = "sessions"  # the API's server-side browser sessions
    LLM_CALLS = "llmCalls"  # written by the gateway, read by the API
    BUDGET_COUNTERS = "budgetCounters"  # the gateway's
    BUDGET_POLICIES = "budgetPolicies"  # admins' budget policies: written by the API, read by the gateway
    BUDGET_THROTTLES = "budgetThrottles"  # admins' manual throttles: the same
    BUDGET_AUDIT = "budgetAudit"  # who changed which policy or throttle, when (the API's)
    BUDGET_ADMIN = "budgetAdmin"  # gatewayConfig: the file's policies, as the gateway read them
    GATEWAY_PODS = "gatewayPods"  # each gateway pod's heartbeat: whose reservations are orphaned
    TRIGGER_DELIVERIES = "triggerDeliveries"  # the API's record of each trigger delivery (its dedupe key)
    NOTIFY_SUBSCRIPTIONS = "notifySubscriptions"  # who wants which events where (sinks encrypted)
    NOTIFY_EVENTS = "notifyEvents"  # each event to notify once, until fanned out to its deliveries
    NOTIFY_DELIVERIES = "notifyDeliveries"  # the outbox: one per (event, subscription), its state
    NOTIFY_ZONES = "notifyZones"  # each user's last budget zone seen in the gateway's call records
    API_PEERS = "apiPeers"  # each API process's wake-up address (services/peers.py), while it runs


class _Wire(BaseModel):
    """camelCase on the wire and in Firestore, snake_case in Python; unknown fields kept (newer writers)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Charged(_Wire):
    tokens: int = 0
    messages: int = 0
    cost_usd: str = Field(default="0", alias="costUSD")
    cost_nanos: int = 0
    # What the charge is: "usage" (the answer's), "estimate" (attempts the provider may have billed,
    # usage unknown), "usage+estimate" (both), "none" (docs/governance.md, "What a call is charged").
    basis: str = ""


class Estimate(_Wire):
    tokens: int = 0
    cost_nanos: int = 0


class CallDecision(_Wire):
    action: str = ""
    zone: str = ""
    reason: str = ""
    model: str | None = None


class LLMCallRecord(_Wire):
    """One call through the gateway (`llmCalls/<id>`), written once when the call ends."""

    id: str
    ts: float
    outcome: str
    namespace: str = ""
    execution: str = ""
    execution_uid: str = ""
    agent: str = ""
    user: str = ""
    priority: int = 5
    correlation_id: str = ""
    protocol: str = ""
    stream: bool = False
    requested_model: str | None = None
    model: str | None = None
    channel: str | None = None
    priced: bool | None = None
    fallbacks: int = 0
    fallback_path: list[str] = Field(default_factory=list)
    retries: int = 0
    input_tokens: int = 0  # every input token, cached or not; the next three are parts of it
    uncached_input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # any TTL
    cache_write_1h_tokens: int = Field(default=0, alias="cacheWrite1hTokens")  # of cache_write_tokens
    output_tokens: int = 0
    # Prompt-cache breakpoints the request carried, and whether the hop that answered was sent none
    # (its channel caches by itself) with the reason.
    cache_markers: int = 0
    cache_markers_dropped: bool = False
    cache_markers_note: str = ""
    charged: Charged = Field(default_factory=Charged)
    estimate: Estimate = Field(default_factory=Estimate)
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    errors: list[str] = Field(default_factory=list)
    decision: CallDecision = Field(default_factory=CallDecision)
    route: dict[str, Any] | None = None
    dropped: list[str] = Field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")
