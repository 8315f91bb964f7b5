"""One call through the gateway, as the pipeline carries it from decision to metering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from agentry_common import tracing
from agentry_common.checkpoints import RIDING_STORED_HEADER
from agentry_common.governance import budget_subjects
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import Claims
from agentry_llm import ChatRequest, ChatResponse, ProviderError
from agentry_llm.base import ChatProvider, TextCallback
from agentry_llm.telemetry import chat_span, record_response

from . import prompt_cache
from .budgets import Amount, Decision, run_policy
from .channels import ChannelPool
from .charging import may_have_billed
from .ledger import Subjects
from .prompt_cache import Prefix
from .routing import AutoDecision, Hop
from .wire import Parsed, WireProtocol

Outcome = Literal["ok", "failed", "broken", "timeout", "error", "cancelled"]


class Rejected(Exception):
    """A request answered with an error before any upstream call: a step of the pipeline stops it.

    `outcome` labels the requests metric (None: already counted); `headers` are added to the
    response's; `extra` goes into the error body.
    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str | None = None,
        outcome: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.outcome = outcome
        self.headers = headers or {}
        self.extra = extra


class StreamBroken(Exception):
    """A hop failed after part of its answer reached the client: no retry, no fallback."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.short())
        self.error = error


def public_failures(errors: list[ProviderError]) -> str:
    """Upstream failures as a caller is told them: which hop, which HTTP status; never an exception's
    text (connection errors name internal hosts; the call record keeps the redacted detail)."""
    parts = [f"{e.provider}: " + (f"HTTP {e.status}" if e.status else "no answer") for e in errors]
    return "; ".join(dict.fromkeys(parts)) or "no answer"


# A user token's calls are charged, as an agent, to `<namespace>/agentry:<purpose>` (the designer:
# `agentry:designer`): not a valid Agent name (":"), so no Agent shares its counters.
PSEUDO_AGENT_PREFIX = "agentry:"


def subjects_of(claims: Claims) -> Subjects:
    """Who a token's calls are charged to. A run token: its user, agent and Execution (with its own
    limits). A user token: its user (the same subject as their runs), the pseudo-agent of its purpose
    in its namespace (counted, like the namespace and the installation, only while a budget applies to
    it: every user's designer calls share it), no Execution."""
    if claims.typ == "user":
        names = budget_subjects(
            claims.namespace, PSEUDO_AGENT_PREFIX + claims.purpose, None, None, claims.user
        )
        return Subjects(
            user=names.user, agent=names.agent, execution="", namespace=names.namespace, shared_agent=True
        )
    limits = claims.limits
    names = budget_subjects(
        claims.namespace, claims.agent, claims.execution, claims.execution_uid, claims.user_key
    )
    try:
        cost = Decimal(limits.cost_usd) if limits.cost_usd else None
    except InvalidOperation:
        cost = None  # the operator writes the CR's validated USD string; never expected
    return Subjects.of(names, tuple(run_policy(limits.tokens, cost)))


def cache_key_of(subjects: Subjects) -> str:
    """Whose prompt-cache prefixes the gateway remembers: the Execution's (a user token's: its user's)."""
    return subjects.execution or f"user:{subjects.user}"


# The gateway's background tasks (Gateway.spawn: kept until done, a failure logged with `what`).
Spawn = Callable[[Coroutine[Any, Any, int | None], str], asyncio.Task[int | None]]


class RidingStore:
    """The store of the journal entries riding a call (checkpoints/boundary.py), started once the
    call's request is on its way upstream (`start`: agentry_llm's REQUEST_SENT), so that its work
    overlaps the provider's instead of delaying the request; at the latest when the call's first
    answer (or failure) comes, or the call is refused."""

    def __init__(self, store: Coroutine[Any, Any, int | None], spawn: Spawn) -> None:
        self._store, self._spawn = store, spawn
        self._task: asyncio.Task[int | None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = self._spawn(self._store, "journal entries riding a call")

    async def stored(self) -> int | None:
        """The seq of the last entry stored (None: they were not)."""
        self.start()
        assert self._task is not None
        return await self._task


@dataclass
class Call:
    """What happens to one request, for metering."""

    id: str
    wire: WireProtocol
    claims: Claims
    subjects: Subjects
    parsed: Parsed
    requested_model: str
    model: str  # after auto routing and throttling
    estimate: Amount
    rid: str
    decision: Decision
    started: float
    auto: AutoDecision | None = None
    correlation_id: str = ""
    committed: Hop | None = None  # the hop whose text reached the client
    answered: Hop | None = None
    text_sent: bool = False
    in_flight: bool = False
    finished: bool = False
    upstream_seconds: float = 0.0
    errors: list[ProviderError] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prefixes: list[Prefix] = field(default_factory=list)  # the request's marked prompt-cache prefixes
    response: ChatResponse | None = None  # the answer, once a hop gave one
    billed_attempts: int = 0  # failed attempts the provider may have billed (charging.py)
    attempt_open: bool = False  # an upstream attempt is running (cut now: it may be billed)
    admitted: float = field(default_factory=time.time)  # wall clock, for prompt-cache TTLs
    storing: RidingStore | None = None  # the journal entries riding the call
    journal_last: int | None = None  # the last of them, stored

    @property
    def cache_key(self) -> str:
        return cache_key_of(self.subjects)

    @property
    def protocol(self) -> str:
        return self.wire.flavour.value

    @property
    def cache_markers(self) -> int:
        return len(self.prefixes)

    @property
    def markers_dropped(self) -> bool:
        """The hop that answered (or streamed) took no breakpoints: its channel caches by itself."""
        hop = self.hop
        return bool(self.prefixes) and hop is not None and not takes_markers(hop)

    @property
    def hop(self) -> Hop | None:
        """The hop that answered, or whose text reached the client."""
        return self.answered or self.committed

    def answered_model(self) -> str:
        hop = self.hop
        return hop.model if hop is not None else self.model

    def headers(self) -> dict[str, str]:
        headers = {
            "x-agentry-call-id": self.id,
            "x-agentry-model": self.answered_model(),
            "x-agentry-decision": self.decision.action.value,
            "x-agentry-zone": self.decision.zone.value,
        }
        if self.hop is not None:
            headers["x-agentry-channel"] = self.hop.channel.name
        fallbacks = sum(1 for k, _ in self.events if k == "fallback")
        if fallbacks:
            headers["x-agentry-fallbacks"] = str(fallbacks)
        dropped = self.parsed.dropped + (["cache_control"] if self.markers_dropped else [])
        if dropped:
            headers["x-agentry-dropped"] = ",".join(dropped)
        if self.auto is not None:
            headers["x-agentry-route"] = f"{self.auto.tier} score={self.auto.score:.2f}"
        if self.journal_last is not None:
            headers[RIDING_STORED_HEADER] = str(self.journal_last)
        return headers


def takes_markers(hop: Hop) -> bool:
    """Whether a hop's channel caches by the request's breakpoints (Anthropic's); an OpenAI-protocol
    channel caches prompts by itself and is sent none."""
    return hop.channel.protocol == Flavour.ANTHROPIC


class Guarded:
    """A provider of one hop, as the chain sees it: same name and endpoint (so the same breaker),
    records timing and health, and makes a failure after committed output final."""

    def __init__(self, inner: ChatProvider, hop: Hop, call: Call, pool: ChannelPool) -> None:
        self.inner = inner
        self.hop = hop
        self.call = call
        self.pool = pool

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        committed = False

        def relay(text: str) -> None:
            nonlocal committed
            if not committed:
                committed = True
                self.call.committed = self.hop
            if on_text is not None:
                on_text(text)

        if self.call.prefixes and not takes_markers(self.hop):
            request = prompt_cache.unmarked(request)
        started = time.perf_counter()
        # Left set when the attempt is cancelled (deadline, client gone): the meter counts it billed.
        self.call.attempt_open = True
        try:
            extra = {tracing.ATTR_CHANNEL: self.hop.channel.name}
            with chat_span(self.hop.channel.protocol.value, self.hop.model, extra) as span:
                response = await self.inner.complete(request, relay)
                record_response(span, response)
        except ProviderError as exc:
            elapsed = time.perf_counter() - started
            self.call.attempt_open = False
            self.call.billed_attempts += may_have_billed(exc, committed)
            self.call.upstream_seconds += elapsed
            self.call.errors.append(exc)
            self.pool.record(self.hop.channel.name, False, elapsed, exc.short())
            if committed:
                raise StreamBroken(exc) from exc
            raise
        elapsed = time.perf_counter() - started
        self.call.attempt_open = False
        self.call.upstream_seconds += elapsed
        self.call.answered = self.hop
        self.call.response = response
        self.pool.record(self.hop.channel.name, True, elapsed)
        return response

    async def aclose(self) -> None:
        return None  # the pool owns the provider
