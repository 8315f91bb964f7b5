"""One call through the gateway: authenticate, route, reserve budget, call upstream through the
runtime's provider layer (retries, breakers, fallback), relay the answer, settle and meter.

Streaming: the response status is decided when the first text arrives (or the call ends), so an
upstream failure before any output is still a proper HTTP error and the provider layer may retry or
fall back freely. Once text has reached the client, a hop that breaks is final for this request:
the stream ends with an `error` event (never a second, duplicated answer), and the client's own
retry policy takes over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from agentry_common import pricing
from agentry_common.budgets import (
    Amount,
    Decision,
    call_amount,
    estimate_call,
    nanos_to_usd,
    run_policy,
)
from agentry_common.models import Provider as Protocol
from agentry_common.tokens import Claims, InvalidToken, Keyring, verify
from agentry_llm import (
    BreakerRegistry,
    ChatRequest,
    ChatResponse,
    Message,
    ProviderChain,
    ProviderError,
    ProvidersFailed,
    RetryPolicy,
    TextBlock,
)
from agentry_llm.base import Provider, TextCallback

from .channels import ChannelKeyMissing, ChannelPool, Redactor
from .config import GatewayConfig, Settings
from .ledger import Ledger, Subjects
from .metrics import Metrics
from .routing import AUTO_MODEL, AutoDecision, Hop, NoRoute, Router
from .wire import Parsed, WireError
from .wire import anthropic as anthropic_wire
from .wire import openai as openai_wire

log = logging.getLogger("agentry.gateway")

MAX_BODY_BYTES = 32 * 2**20  # Anthropic's own request limit is 32 MB
# Upstream client errors that are the request's fault and mean the same through any channel.
_PASS_THROUGH = {400, 404, 413, 422}


class StreamBroken(Exception):
    """A hop failed after part of its answer reached the client: no retry, no fallback."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.short())
        self.error = error


@dataclass
class _Call:
    """What happens to one request, for metering."""

    id: str
    protocol: Protocol
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


class _Guarded:
    """A provider of one hop, as the chain sees it: same name and endpoint (so the same breaker),
    records timing and health, and makes a failure after committed output final."""

    def __init__(self, inner: Provider, hop: Hop, call: _Call, pool: ChannelPool) -> None:
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

        started = time.perf_counter()
        try:
            response = await self.inner.complete(request, relay)
        except ProviderError as exc:
            elapsed = time.perf_counter() - started
            self.call.upstream_seconds += elapsed
            self.call.errors.append(exc)
            self.pool.record(self.hop.channel.name, False, elapsed, exc.short())
            if committed:
                raise StreamBroken(exc) from exc
            raise
        elapsed = time.perf_counter() - started
        self.call.upstream_seconds += elapsed
        self.call.answered = self.hop
        self.pool.record(self.hop.channel.name, True, elapsed)
        return response

    async def aclose(self) -> None:
        return None  # the pool owns the provider


def subjects_of(claims: Claims) -> Subjects:
    """Who a run token's calls are charged to: its user, agent and Execution (with its own limits)."""
    ns, limits = claims.namespace, claims.limits
    execution = f"{ns}/{claims.execution}" + (f"/{claims.execution_uid}" if claims.execution_uid else "")
    try:
        cost = Decimal(limits.cost_usd) if limits.cost_usd else None
    except InvalidOperation:
        cost = None  # the operator writes the CR's validated USD string; never expected
    return Subjects(
        user=claims.user_key,
        agent=f"{ns}/{claims.agent}",
        execution=execution,
        run_policies=tuple(run_policy(limits.tokens, cost)),
    )


Outcome = Literal["ok", "failed", "broken", "timeout", "error", "cancelled"]


class _SettlingStream(StreamingResponse):
    """A streaming response that reports when it is done, however it ends."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


_Item = tuple[str, Any]


class Gateway:
    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        keyring: Keyring,
        ledger: Ledger,
    ) -> None:
        self.settings = settings
        self.config = config
        self.keyring = keyring
        self.ledger = ledger
        self.metrics = Metrics()
        self.router = Router(config)
        self.breakers = BreakerRegistry(
            fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds
        )
        self.pool = ChannelPool(
            config, self.breakers, settings.upstream_timeout_seconds, settings.key_recheck_seconds
        )
        self.policy = RetryPolicy(
            settings.retry_attempts, settings.retry_initial_seconds, settings.retry_max_seconds
        )
        self.redact: Redactor = self.pool.redact
        self._background: set[asyncio.Task[Any]] = set()

    # -- housekeeping -----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %s", what, t.exception())

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for background settlements and call records (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.pool.aclose()
        await self.ledger.close()

    # -- authentication ---------------------------------------------------------------------------------

    @staticmethod
    def token_of(request: Request) -> str | None:
        key = request.headers.get("x-api-key")
        if key:
            return key.strip()
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def authenticate(self, request: Request, expected: Literal["run", "svc"]) -> Claims:
        return verify(self.token_of(request), self.keyring, expected=expected)

    # -- the call ---------------------------------------------------------------------------------------

    async def handle(self, protocol: Protocol, request: Request) -> Response:
        started = time.perf_counter()
        wire = anthropic_wire if protocol is Protocol.ANTHROPIC else openai_wire
        label = protocol.value

        def fail(status: int, message: str, kind: str | None = None, **extra: Any) -> JSONResponse:
            headers = {"x-agentry-error": kind or str(status)}
            return JSONResponse(
                wire.error(status, self.redact(message), kind, **extra), status, headers=headers
            )

        try:
            claims = self.authenticate(request, "run")
        except InvalidToken as exc:
            self.metrics.requests.labels(label, "unauthorized").inc()
            kind = "authentication_error" if protocol is Protocol.ANTHROPIC else "invalid_api_key"
            return fail(401, f"Agentry gateway: {exc} ({exc.reason})", kind)
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            self.metrics.requests.labels(label, "invalid").inc()
            return fail(413, f"request larger than {MAX_BODY_BYTES // 2**20} MiB", "request_too_large")
        try:
            body = json.loads(raw)
            parsed = (
                anthropic_wire.parse(body)
                if protocol is Protocol.ANTHROPIC
                else openai_wire.parse(body, self.settings.default_max_tokens)
            )
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.metrics.requests.labels(label, "invalid").inc()
            return fail(400, "the body is not JSON")
        except WireError as exc:
            self.metrics.requests.labels(label, "invalid").inc()
            return fail(exc.status, exc.message, exc.kind)

        subjects = subjects_of(claims)
        model = parsed.model
        auto: AutoDecision | None = None
        try:
            if model == AUTO_MODEL:
                states = [
                    s
                    for subject in await self.ledger.snapshot(subjects)
                    for s in subject.states(self.ledger.clock(), self.ledger.calendar)
                ]
                pct = max((s.pct for s in states), default=0.0)
                auto = self.router.auto(
                    parsed.chat, agent=subjects.agent, priority=claims.priority, budget_pct=pct
                )
                model = auto.model
            self.router.chain(model, protocol)
        except NoRoute as exc:
            self.metrics.requests.labels(label, "invalid").inc()
            return fail(
                404, str(exc), "not_found_error" if protocol is Protocol.ANTHROPIC else "model_not_found"
            )
        except Exception as exc:
            log.exception("budget store read failed")
            self.metrics.requests.labels(label, "failed").inc()
            return fail(
                503, f"the budget store is unavailable ({type(exc).__name__}); the gateway fails closed"
            )

        estimate = estimate_call(model, len(raw), parsed.chat.max_tokens)
        try:
            rid, decision = await self.ledger.reserve(
                subjects,
                estimate=estimate,
                priority=claims.priority,
                model=model,
                cheaper=self.router.cheaper,
            )
        except Exception as exc:
            log.exception("budget reservation failed")
            self.metrics.requests.labels(label, "failed").inc()
            return fail(
                503, f"the budget store is unavailable ({type(exc).__name__}); the gateway fails closed"
            )
        self.metrics.decisions.labels(decision.action.value, decision.zone.value).inc()
        call = _Call(
            id=uuid.uuid4().hex,
            protocol=protocol,
            claims=claims,
            subjects=subjects,
            parsed=parsed,
            requested_model=parsed.model,
            model=decision.model or model,
            estimate=estimate,
            rid=rid,
            decision=decision,
            started=started,
            auto=auto,
            correlation_id=request.headers.get("x-agentry-correlation-id", "")[:64],
        )
        if not decision.allowed:
            self.metrics.requests.labels(label, "refused").inc()
            self.spawn(self.ledger.record_call(self._record(call, "refused", None, Amount())), "call record")
            # 402 + budget_exceeded: the provider layer treats it as final (no retry, no fallback).
            return fail(
                402, f"Agentry budget: {decision.reason}", "budget_exceeded", decision=decision.to_wire()
            )

        try:
            try:
                hops = self.router.chain(call.model, protocol)
            except NoRoute:
                hops = self.router.chain(
                    model, protocol
                )  # no route for the cheaper model: keep the asked one
                call.model = model
            providers: list[Provider] = [_Guarded(self.pool.provider(h), h, call, self.pool) for h in hops]
        except ChannelKeyMissing as exc:
            self._finish(call, "error", None)
            return fail(503, f"Agentry gateway misconfigured: {exc}")

        chain = ProviderChain(providers, self.breakers, self.policy, on_event=self._on_event(call))
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        task = asyncio.create_task(self._run(chain, parsed.chat, queue, stream=parsed.stream))
        self.metrics.in_flight.inc()
        call.in_flight = True

        if not parsed.stream:
            kind, value = await queue.get()
            if kind == "done":
                self._finish(call, "ok", value)
                answered = self._answered_model(call)
                payload = (
                    anthropic_wire.message(value, f"msg_{call.id}", answered)
                    if protocol is Protocol.ANTHROPIC
                    else openai_wire.completion(value, f"chatcmpl-{call.id}", answered)
                )
                return JSONResponse(payload, headers=self._headers(call))
            return self._error_response(call, kind, value, fail)

        first = await queue.get()
        if first[0] not in ("text", "done"):
            return self._error_response(call, first[0], first[1], fail)
        writer: anthropic_wire.Stream | openai_wire.Stream = (
            anthropic_wire.Stream(f"msg_{call.id}")
            if protocol is Protocol.ANTHROPIC
            else openai_wire.Stream(f"chatcmpl-{call.id}", parsed.include_usage)
        )

        def closed() -> None:
            # The relay's own `finally` settles; this covers a client gone before it even started.
            if not call.finished:
                task.cancel()
                self._finish(call, "cancelled", None)

        return _SettlingStream(
            self._relay(call, writer, first, queue, task),
            closed,
            media_type="text/event-stream",
            headers={**self._headers(call), "cache-control": "no-cache"},
        )

    async def _run(
        self, chain: ProviderChain, chat: ChatRequest, queue: asyncio.Queue[_Item], *, stream: bool
    ) -> None:
        on_text: TextCallback | None = (lambda t: queue.put_nowait(("text", t))) if stream else None
        try:
            async with asyncio.timeout(self.settings.call_deadline_seconds):
                response = await chain.complete(chat, on_text=on_text)
            queue.put_nowait(("done", response))
        except ProvidersFailed as exc:
            queue.put_nowait(("failed", exc))
        except StreamBroken as exc:
            queue.put_nowait(("broken", exc))
        except TimeoutError as exc:
            queue.put_nowait(("timeout", exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unexpected error in an upstream call")
            queue.put_nowait(("error", exc))

    async def _relay(
        self,
        call: _Call,
        writer: anthropic_wire.Stream | openai_wire.Stream,
        first: _Item,
        queue: asyncio.Queue[_Item],
        task: asyncio.Task[None],
    ) -> AsyncIterator[bytes]:
        outcome: Outcome | None = None
        response: ChatResponse | None = None
        try:
            yield writer.open(self._answered_model(call))
            kind, value = first
            while True:
                if kind == "text":
                    call.text_sent = True
                    yield writer.text(value)
                elif kind == "done":
                    response = value
                    text = value.message.text()
                    if not call.text_sent and text:
                        call.text_sent = True
                        yield writer.text(text)
                    yield writer.close(value)
                    outcome = "ok"
                    break
                else:
                    outcome = kind  # type: ignore[assignment]
                    yield writer.fail(self.redact(f"Agentry gateway: upstream failed mid-stream: {value}"))
                    break
                kind, value = await queue.get()
        finally:
            if outcome is None:  # the client went away
                task.cancel()
                outcome = "cancelled"
            self._finish(call, outcome, response)

    # -- outcomes ---------------------------------------------------------------------------------------

    def _answered_model(self, call: _Call) -> str:
        hop = call.answered or call.committed
        return hop.model if hop is not None else call.model

    def _headers(self, call: _Call) -> dict[str, str]:
        hop = call.answered or call.committed
        headers = {
            "x-agentry-call-id": call.id,
            "x-agentry-model": self._answered_model(call),
            "x-agentry-decision": call.decision.action.value,
            "x-agentry-zone": call.decision.zone.value,
        }
        if hop is not None:
            headers["x-agentry-channel"] = hop.channel.name
        fallbacks = sum(1 for k, _ in call.events if k == "fallback")
        if fallbacks:
            headers["x-agentry-fallbacks"] = str(fallbacks)
        if call.parsed.dropped:
            headers["x-agentry-dropped"] = ",".join(call.parsed.dropped)
        if call.auto is not None:
            headers["x-agentry-route"] = f"{call.auto.tier} score={call.auto.score:.2f}"
        return headers

    def _on_event(self, call: _Call) -> Callable[[str, dict[str, Any]], None]:
        def on_event(kind: str, data: dict[str, Any]) -> None:
            call.events.append((kind, data))
            if kind == "fallback":
                self.metrics.fallbacks.labels(
                    self.pool.hop_of(data["from"]), self.pool.hop_of(data["to"])
                ).inc()
            elif kind == "retry":
                self.metrics.retries.labels(self.pool.hop_of(data["provider"])).inc()
            elif kind == "breaker" and "previous" in data:
                self.metrics.breaker.labels(self.pool.hop_of(data["provider"])).set(
                    1 if data["state"] == "open" else 0
                )

        return on_event

    def _error_response(
        self, call: _Call, kind: str, value: Any, fail: Callable[..., JSONResponse]
    ) -> JSONResponse:
        self._finish(call, kind, None)  # type: ignore[arg-type]
        label = call.protocol.value
        if kind == "timeout":
            return fail(
                504, f"Agentry gateway: the call took longer than {self.settings.call_deadline_seconds:g} s"
            )
        if kind != "failed":
            return fail(500, f"Agentry gateway: internal error ({type(value).__name__})")
        errors = call.errors
        if not errors:  # every hop skipped by an open breaker
            response = fail(
                503, f"Agentry gateway: {value}", "overloaded_error" if label == "anthropic" else None
            )
            response.headers["retry-after"] = str(int(self.settings.breaker_reset_seconds))
            return response
        statuses = {e.status for e in errors}
        if len(statuses) == 1 and (status := next(iter(statuses))) in _PASS_THROUGH:
            return fail(status, f"upstream: {errors[-1].message}")
        return fail(502, f"Agentry gateway: {value}")

    def _finish(self, call: _Call, outcome: Outcome, response: ChatResponse | None) -> None:
        """Settle the reservation, write the call record, count: exactly once per call."""
        if call.finished:
            return
        call.finished = True
        if call.in_flight:
            call.in_flight = False
            self.metrics.in_flight.dec()
        if response is not None:
            hop = call.answered or call.committed
            model = hop.model if hop is not None else call.model
            actual = call_amount(model, response.usage.input_tokens, response.usage.output_tokens)
        elif outcome in ("broken", "cancelled"):
            actual = call.estimate  # the provider may have billed the partial answer: count the worst case
        else:
            actual = Amount()  # nothing answered: release the reservation
        self.spawn(self.ledger.settle(call.subjects, call.rid, actual), "budget settlement")
        self.spawn(self.ledger.record_call(self._record(call, outcome, response, actual)), "call record")
        total = time.perf_counter() - call.started
        self.metrics.requests.labels(call.protocol.value, outcome).inc()
        self.metrics.latency.labels(call.protocol.value).observe(total)
        if outcome == "ok":
            self.metrics.overhead.observe(max(0.0, total - call.upstream_seconds))
        if response is not None and call.answered is not None:
            channel, model = call.answered.channel.name, call.answered.model
            self.metrics.calls.labels(channel, model).inc()
            self.metrics.tokens.labels(channel, model, "input").inc(response.usage.input_tokens)
            self.metrics.tokens.labels(channel, model, "output").inc(response.usage.output_tokens)
            self.metrics.cost.labels(channel, model).inc(float(nanos_to_usd(actual.cost_nanos)))
        if call.auto is not None:
            self.router.stats.record(call.subjects.agent, call.auto.tier, outcome == "ok")

    def _record(
        self, call: _Call, outcome: str, response: ChatResponse | None, actual: Amount
    ) -> dict[str, Any]:
        claims = call.claims
        hop = call.answered or call.committed
        fallbacks = [d for k, d in call.events if k == "fallback"]
        model = hop.model if hop is not None else None
        return {
            "id": call.id,
            "ts": time.time(),
            "outcome": outcome,
            "namespace": claims.namespace,
            "execution": claims.execution,
            "executionUid": claims.execution_uid,
            "agent": claims.agent,
            "user": call.subjects.user,
            "priority": claims.priority,
            "correlationId": call.correlation_id,
            "protocol": call.protocol.value,
            "stream": call.parsed.stream,
            "requestedModel": call.requested_model,
            "model": model,
            "channel": hop.channel.name if hop is not None else None,
            "priced": pricing.is_priced(model) if model else None,
            "fallbacks": len(fallbacks),
            "fallbackPath": [
                f"{self.pool.hop_of(d['from'])} -> {self.pool.hop_of(d['to'])}" for d in fallbacks
            ],
            "retries": sum(1 for k, _ in call.events if k == "retry"),
            "inputTokens": response.usage.input_tokens if response is not None else 0,
            "outputTokens": response.usage.output_tokens if response is not None else 0,
            "charged": {
                "tokens": actual.tokens,
                "messages": actual.messages,
                "costUSD": pricing.usd_string(nanos_to_usd(actual.cost_nanos)),
                "costNanos": actual.cost_nanos,
            },
            "estimate": {"tokens": call.estimate.tokens, "costNanos": call.estimate.cost_nanos},
            "latencyMs": round((time.perf_counter() - call.started) * 1000, 1),
            "upstreamMs": round(call.upstream_seconds * 1000, 1),
            "errors": [self.redact(e.short()) for e in call.errors],
            "decision": {
                "action": call.decision.action.value,
                "zone": call.decision.zone.value,
                "reason": call.decision.reason,
                "model": call.decision.model,
            },
            "route": call.auto.to_wire() if call.auto is not None else None,
            "dropped": call.parsed.dropped,
        }

    # -- probes and admission ---------------------------------------------------------------------------

    async def probe(self, channel_name: str) -> dict[str, Any]:
        """One minimal real call on a channel (max_tokens 1), through its breaker."""
        channel = self.config.channel(channel_name)
        if channel is None:
            raise KeyError(channel_name)
        model = channel.probe_model or _probe_default(self.config, channel_name)
        hop = Hop(channel, model)
        started = time.perf_counter()
        try:
            provider = self.pool.provider(hop)
        except ChannelKeyMissing as exc:
            return {"channel": channel_name, "model": model, "ok": False, "latencyMs": 0.0, "error": str(exc)}
        chain = ProviderChain([provider], self.breakers, RetryPolicy(attempts=1))
        request = ChatRequest(
            system="You are a health check.",
            messages=[Message(role="user", content=[TextBlock(text="ping")])],
            max_tokens=1,
        )
        try:
            async with asyncio.timeout(30):
                response = await chain.complete(request)
        except (ProvidersFailed, TimeoutError) as exc:
            elapsed = time.perf_counter() - started
            self.pool.record(channel_name, False, elapsed, str(exc))
            error = self.redact(str(exc) or "timed out after 30 s")
            return {
                "channel": channel_name,
                "model": model,
                "ok": False,
                "latencyMs": elapsed * 1000,
                "error": error,
            }
        elapsed = time.perf_counter() - started
        self.pool.record(channel_name, True, elapsed)
        usage = response.usage
        await self.ledger.record_call(
            {
                "id": uuid.uuid4().hex,
                "ts": time.time(),
                "outcome": "probe",
                "channel": channel_name,
                "model": model,
                "inputTokens": usage.input_tokens,
                "outputTokens": usage.output_tokens,
                "latencyMs": round(elapsed * 1000, 1),
            }
        )
        return {
            "channel": channel_name,
            "model": model,
            "ok": True,
            "latencyMs": elapsed * 1000,
            "error": None,
        }


def _probe_default(config: GatewayConfig, channel: str) -> str:
    for route in config.routes:
        for target in route.chain:
            if target.channel == channel and target.model:
                return target.model
    ch = config.channel(channel)
    return "claude-haiku-4-5" if ch is not None and ch.protocol is Protocol.ANTHROPIC else "gpt-4.1-nano"
