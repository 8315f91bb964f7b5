"""One call through the gateway, as a pipeline: authenticate -> parse -> decide -> call -> meter.

Each step either hands the next one what it needs or stops the request (`Rejected`), answered in the
client's protocol (`WireProtocol`); the pipeline never branches on which protocol that is. The call
runs through the runtime's provider layer (retries, breakers, fallback): `relay` streams its answer,
`metering` settles the reservation, records the call and counts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Final, NoReturn, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agentry_common.governance import RefusalType
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import Claims, InvalidToken, Keyring, TokenType, verify
from agentry_llm import BreakerRegistry, ChatProvider, ProviderChain, RetryPolicy

from . import telemetry, unpriced
from .budgets import Amount, Decision
from .budgets.admin_source import AdminPolicies
from .calls import Call, Guarded, Rejected, RidingStore, cache_key_of, public_failures, subjects_of
from .channels import ChannelKeyMissing, ChannelPool, Redactor
from .checkpoints import CheckpointStore, build_store
from .checkpoints.beside import CallsFirst
from .checkpoints.boundary import check_boundary, store_riding
from .config import GatewayConfig
from .ledger import FirestoreLedger, Ledger, Subjects
from .memory import MemoryStore
from .memory import build_store as build_memory_store
from .metering import Meter
from .metrics import Metrics
from .probe import Prober
from .prompt_cache import CacheMemory
from .relay import Item, SettlingStream, relay, run_chain
from .routing import AUTO_MODEL, AutoDecision, ModelNotAllowed, NoRoute, Router
from .settings import Settings
from .wire import Parsed, WireError, WireProtocol
from .wire import anthropic as anthropic_wire
from .wire import openai as openai_wire

log = logging.getLogger("agentry.gateway")
T = TypeVar("T")

# The tokens the LLM routes accept: a run pod's, and a user token (the API's designer).
LLM_TOKEN_TYPES: Final[tuple[TokenType, ...]] = ("run", "user")
MAX_BODY_BYTES = 32 * 2**20  # Anthropic's own request limit is 32 MB
# Upstream client errors that are the request's fault and mean the same through any channel.
_PASS_THROUGH = {400, 404, 413, 422}
WIRES: dict[Flavour, WireProtocol] = {
    Flavour.ANTHROPIC: anthropic_wire.WIRE,
    Flavour.OPENAI: openai_wire.WIRE,
}


def _store_unavailable(exc: Exception) -> Rejected:
    """503 without the exception's text (the caller logged it)."""
    return Rejected(503, "the budget store is unavailable; the gateway fails closed", outcome="failed")


class Gateway:
    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        keyring: Keyring,
        ledger: Ledger,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.keyring = keyring
        self.ledger = ledger
        # Run journals live where the budget counters do (the ledger's Firestore client, or memory).
        client = ledger.client if isinstance(ledger, FirestoreLedger) else None
        self.checkpoints = checkpoints or build_store(client, settings.checkpoint_retention_days)
        self.memories: MemoryStore = build_memory_store(client)  # Agents' memories, beside them
        self.calls_first = CallsFirst()  # appends beside a model call wait while calls are routed
        self.metrics = Metrics()
        self.metrics.watch_ledger(lambda: ledger.stats.expired_reservations, ledger.pods_gone)
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
        self.cache = CacheMemory()  # prompt-cache prefixes the providers reported: cache-aware estimates
        self.meter = Meter(self.metrics, ledger, self.pool, self.router, self.redact, self.spawn, self.cache)
        self.prober = Prober(config, self.pool, self.breakers, ledger, self.redact)
        self._background: set[asyncio.Task[Any]] = set()
        self.admin = self._admin_policies()

    # -- housekeeping -----------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %s", what, t.exception())

        task.add_done_callback(done)
        return task

    async def drain(self) -> None:
        """Wait for background settlements and call records (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _admin_policies(self) -> AdminPolicies | None:
        """Admins' policies and throttles, read again every few seconds (budgets/admin_source.py);
        they live in Firestore, so the memory ledger has none."""
        every = self.settings.admin_refresh_seconds
        if not isinstance(self.ledger, FirestoreLedger) or every <= 0:
            return None
        admin = AdminPolicies(self.ledger.client, self.config.budgets, self.ledger, every, self.ledger.clock)
        try:
            admin.start()
        except RuntimeError:  # built outside an event loop (a test's Gateway): nothing to refresh
            return None
        return admin

    async def aclose(self) -> None:
        if self.admin is not None:
            await self.admin.aclose()
        await self.drain()
        await self.pool.aclose()
        await self.checkpoints.close()
        await self.memories.close()
        await self.ledger.close()

    async def probe(self, channel_name: str) -> dict[str, Any]:
        """One minimal real call on a channel (max_tokens 1), through its breaker."""
        return await self.prober.probe(channel_name)

    # -- authentication ---------------------------------------------------------------------------------

    @staticmethod
    def token_of(request: Request) -> str | None:
        key = request.headers.get("x-api-key")
        if key:
            return key.strip()
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def authenticate(self, request: Request, expected: TokenType | tuple[TokenType, ...]) -> Claims:
        return verify(self.token_of(request), self.keyring, expected=expected)

    # -- the call ---------------------------------------------------------------------------------------

    async def handle(self, protocol: Flavour, request: Request) -> Response:
        started = time.perf_counter()
        wire = WIRES[protocol]
        routed = self.calls_first.enter()
        storing: RidingStore | None = None
        try:
            claims = self._authenticate_caller(wire, request)
            size, parsed = await self._parse(wire, request)
            self._check_chain(claims, parsed)
            storing = store_riding(
                self.checkpoints, self.ledger, self.metrics, claims, request.headers, self.spawn
            )
            await check_boundary(self.checkpoints, claims, request.headers)  # a steering message first
            call = await self._decide(wire, request, claims, parsed, size, started)
            call.storing = storing  # the answer names what it stored
            return await self._call(call, routed)  # metered when it ends (Meter.finish)
        except Rejected as exc:
            if exc.outcome is not None:
                self.metrics.requests.labels(protocol.value, exc.outcome).inc()
            return self._fail(wire, exc)
        finally:
            routed()
            if storing is not None:
                storing.start()  # a refused call's entries are stored all the same

    def _fail(self, wire: WireProtocol, exc: Rejected) -> JSONResponse:
        headers = {"x-agentry-error": exc.kind or str(exc.status), **exc.headers}
        body = wire.error(exc.status, self.redact(exc.message), exc.kind, **exc.extra)
        return JSONResponse(body, exc.status, headers=headers)

    def _authenticate_caller(self, wire: WireProtocol, request: Request) -> Claims:
        """A run token (a run pod) or a user token (the API, for a person's designer turn); a service
        token is refused here like any other key (401)."""
        try:
            return self.authenticate(request, LLM_TOKEN_TYPES)
        except InvalidToken as exc:
            message = f"Agentry gateway: {exc} ({exc.reason})"
            raise Rejected(401, message, wire.unauthorized, outcome="unauthorized") from exc

    async def _parse(self, wire: WireProtocol, request: Request) -> tuple[int, Parsed]:
        """The request's size in bytes (for the input estimate) and what it asks."""
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            message = f"request larger than {MAX_BODY_BYTES // 2**20} MiB"
            raise Rejected(413, message, "request_too_large", outcome="invalid")
        try:
            return len(raw), wire.parse(json.loads(raw), self.settings.default_max_tokens)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Rejected(400, "the body is not JSON", outcome="invalid") from None
        except WireError as exc:
            raise Rejected(exc.status, exc.message, exc.kind, outcome="invalid") from exc

    @staticmethod
    def _check_chain(claims: Claims, parsed: Parsed) -> None:
        """A run token names its Agent's model chain (`mdl`): a call may ask for those models only
        (a user token, the models its minter allows). What the gateway itself substitutes (throttle,
        route fallbacks) is its own decision."""
        if not claims.allows_model(parsed.model):
            allowed = ", ".join(claims.models)
            message = (
                f"Agentry gateway: model {parsed.model!r} is not among this token's models ({allowed})"
                if claims.typ == "user"
                else f"Agentry gateway: model {parsed.model!r} is not in this run's model chain "
                f"({allowed}: the Agent's spec.model and its fallbacks)"
            )
            raise Rejected(400, message, outcome="invalid")

    def unpriced_refusal(
        self, subjects: Subjects, model: str, protocols: tuple[Flavour, ...], priority: int
    ) -> Decision | None:
        """unpriced.py's refusal for a call for `model` (None: it may go)."""
        return unpriced.refusal(self.config, self.router, self.ledger, subjects, model, protocols, priority)

    async def _route(
        self, wire: WireProtocol, claims: Claims, subjects: Subjects, parsed: Parsed
    ) -> tuple[str, AutoDecision | None]:
        """The model to call (`auto` picks one by the request and the budget's use) and the pick."""
        model, auto = parsed.model, None
        try:
            if model == AUTO_MODEL:
                snapshot = await self.ledger.snapshot(subjects)
                now = self.ledger.clock()
                states = [s for subject in snapshot for s in subject.states(now, self.ledger.calendar)]
                pct = max((s.pct for s in states), default=0.0)
                auto = self.router.auto(
                    parsed.chat, agent=subjects.agent, priority=claims.priority, budget_pct=pct
                )
                model = auto.model
            self.router.chain(model, wire.flavour)
        except NoRoute as exc:
            raise Rejected(404, str(exc), wire.not_found, outcome="invalid") from exc
        except ModelNotAllowed as exc:
            raise Rejected(400, f"Agentry gateway: {exc}", outcome="invalid") from exc
        except Exception as exc:
            log.exception("budget store read failed")
            raise _store_unavailable(exc) from exc
        return model, auto

    async def _decide(
        self, wire: WireProtocol, request: Request, claims: Claims, parsed: Parsed, size: int, started: float
    ) -> Call:
        """Route, then reserve the call's worst case: the budget decides whether and on which model."""
        subjects = subjects_of(claims)
        model, auto = await self._route(wire, claims, subjects, parsed)

        def call_of(estimate: Amount, rid: str, decision: Decision) -> Call:
            return Call(
                prefixes=prefixes,
                id=uuid.uuid4().hex,
                wire=wire,
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

        prefixes, estimate = self.cache.estimate(
            cache_key_of(subjects), model, parsed.chat, size, self.config.default_price
        )
        no_price = self.unpriced_refusal(subjects, model, (wire.flavour,), claims.priority)
        if no_price is not None:  # decided before any reservation: nothing is charged
            self.metrics.decisions.labels(no_price.action.value, no_price.zone.value).inc()
            self._refuse(call_of(Amount(), "", no_price))
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
            raise _store_unavailable(exc) from exc
        self.metrics.decisions.labels(decision.action.value, decision.zone.value).inc()
        call = call_of(estimate, rid, decision)
        if not decision.allowed:
            self._refuse(call)
        if call.model != model:
            try:
                self.router.chain(call.model, wire.flavour)
                cheaper_ok = self.unpriced_refusal(subjects, call.model, (wire.flavour,), 0) is None
            except (NoRoute, ModelNotAllowed):
                cheaper_ok = False
            if not cheaper_ok:
                call.model = model  # the cheaper model has no route, or no price: keep the asked one
        telemetry.record_decision(call)
        return call

    def _refuse(self, call: Call) -> NoReturn:
        """A call the budget refused: recorded, and answered 402 + budget_exceeded, which the provider
        layer treats as final (no retry, no fallback)."""
        self.meter.refused(call)
        telemetry.record_decision(call)
        message = f"Agentry budget: {call.decision.reason}"
        raise Rejected(402, message, RefusalType.BUDGET_EXCEEDED.value, decision=call.decision.to_wire())

    def _providers(self, call: Call) -> list[ChatProvider]:
        try:
            hops = self.router.chain(call.model, call.wire.flavour)
            return [Guarded(self.pool.provider(h), h, call, self.pool) for h in hops]
        except ChannelKeyMissing as exc:
            self.meter.finish(call, "error", None)
            log.error("call %s: %s", call.id, exc)
            message = f"Agentry gateway misconfigured: channel {exc.channel.name!r} has no API key"
            raise Rejected(503, message) from exc

    async def _call(self, call: Call, routed: Callable[[], None]) -> Response:
        """Call upstream in a task of its own (`routed` once upstream first answers: appends held
        beside it go then); answer as a whole, or stream from the first text."""
        chain = ProviderChain(
            self._providers(call), self.breakers, self.policy, on_event=self.meter.on_event(call)
        )
        queue: asyncio.Queue[Item] = asyncio.Queue()
        chat, stream = call.parsed.chat, call.parsed.stream
        deadline = self.settings.call_deadline_seconds
        sent = call.storing.start if call.storing is not None else None  # its entries are stored then
        task = asyncio.create_task(run_chain(chain, chat, queue, stream=stream, deadline=deadline, sent=sent))
        self.metrics.in_flight.inc()
        call.in_flight = True
        first = await queue.get()
        routed()  # upstream answered (or failed): the appends held for it go
        if call.storing is not None:
            call.journal_last = await call.storing.stored()
        kind, value = first
        if kind == "done" and not stream:
            self.meter.finish(call, "ok", value)
            return JSONResponse(
                call.wire.answer(value, call.id, call.answered_model()), headers=call.headers()
            )
        if kind not in ("text", "done"):
            self.meter.finish(call, kind, None)  # type: ignore[arg-type]
            raise self._upstream_error(call, kind, value)

        def closed() -> None:
            # The relay's own `finally` settles; this covers a client gone before it even started.
            if not call.finished:
                task.cancel()
                self.meter.finish(call, "cancelled", None)

        writer = call.wire.stream(call.id, call.parsed)
        return SettlingStream(
            relay(call, writer, first, queue, task, self.redact, self.meter.finish),
            closed,
            media_type="text/event-stream",
            headers={**call.headers(), "cache-control": "no-cache"},
        )

    def _upstream_error(self, call: Call, kind: str, value: Any) -> Rejected:
        """How a call that got no answer is answered (already metered)."""
        if kind == "timeout":
            deadline = self.settings.call_deadline_seconds
            return Rejected(504, f"Agentry gateway: the call took longer than {deadline:g} s")
        if kind != "failed":
            return Rejected(500, f"Agentry gateway: internal error; call {call.id}")
        if not call.errors:  # every hop skipped by an open breaker
            retry_after = str(int(self.settings.breaker_reset_seconds))
            message = (
                f"Agentry gateway: every channel for model {call.model} is paused by its circuit "
                f"breaker; retry after {retry_after} s"
            )
            return Rejected(503, message, call.wire.overloaded, headers={"retry-after": retry_after})
        statuses = {e.status for e in call.errors}
        if len(statuses) == 1 and (status := next(iter(statuses))) in _PASS_THROUGH:
            # The provider's own answer about the request (e.g. the prompt is too long).
            return Rejected(status, f"upstream: {call.errors[-1].message}")
        # Anything else, an upstream 401 (a channel's key) included, is the gateway's fault: 502.
        message = f"Agentry gateway: all providers failed ({public_failures(call.errors)}); call {call.id}"
        return Rejected(502, message)
