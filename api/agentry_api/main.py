"""The Agentry API and dashboard (FastAPI). `create_app()` is the uvicorn factory.

The lifespan creates the Firestore async client and the Kubernetes client once, builds the services,
and starts the watcher (status mirror, sync retries, approval timeouts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from google.api_core import exceptions as gexc
from lightkube import ApiError
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentry_common import tracing
from agentry_common.body_limit import BodyLimit
from agentry_common.heap import freeze_startup_heap

from .auth import Sessions
from .browser import BrowserPages
from .cluster import Cluster, ClusterUnavailable, api_message
from .deadline import RequestDeadline
from .deps import AppState
from .designer_llm import LLM, ProviderLLM, llm_from_settings
from .hosts import TrustedHosts
from .metrics import LATENCY, REQUESTS, serve_metrics
from .oidc import JWKSVerifier, TokenVerifier
from .routers import (
    agents,
    approvals,
    budgets,
    chat,
    events,
    executions,
    health,
    hooks,
    memory,
    messages,
    notification_pages,
    notifications,
    pages,
    scheduler,
    session,
    trigger_pages,
    triggers,
    usage,
    workflows,
)
from .services.agents import AgentService
from .services.approvals import ApprovalService
from .services.errors import REQUEST_ID, Conflict, Invalid, NotFound, OverQuota, Unavailable
from .services.events import EventBus
from .services.feed import EventFeed, RevocationFeed
from .services.hooks import HookReceiver
from .services.notifications import Notifications
from .services.peers import PeerWake
from .services.quotas import Quotas
from .services.runs import RunService
from .services.trials.run import TrialService
from .services.triggers import TRIGGER_SWEEP_SECONDS, TriggerService
from .services.workflow_feed import WorkflowRunFeed
from .services.workflows import WorkflowService
from .session_cache import SessionCache
from .settings import Settings, get_settings
from .storage import Contended, Store, new_client
from .watcher import Watcher

log = logging.getLogger("agentry.api")
WEB = Path(__file__).parent / "web"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
# The dashboard's pages: its own script and stylesheet only (no inline code, no third party), the
# API and its WebSocket on the same host, never framed. Anything else (JSON) may load nothing at all.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
# The OpenAPI pages (FastAPI's) load Swagger UI / ReDoc from a CDN with inline code: framing only.
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CSP = "frame-ancestors 'none'"
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:")


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID if it is a plain token of at most 64 characters, else a new one."""
    given: str = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    if 0 < len(given) <= 64 and set(given) <= REQUEST_ID_CHARS:
        return given
    return uuid.uuid4().hex


def csp_for(scope: Scope, content_type: bytes) -> bytes:
    path = str(scope.get("path", ""))
    if path.startswith(DOCS_PATHS):
        return DOCS_CSP.encode()
    if content_type.startswith(b"text/html"):
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        host = "".join(c for c in host if c.isalnum() or c in ".-:[]") or "localhost"
        return PAGE_CSP.format(host=host).encode()
    return OTHER_CSP.encode()


def session_secret(settings: Settings) -> str:
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    log.warning(
        "AGENTRY_SESSION_SECRET is not set: using a random key; sessions end when this process "
        "restarts and are not shared with other workers or replicas"
    )
    return secrets.token_urlsafe(32)


def user_verifier(settings: Settings, given: TokenVerifier | None) -> TokenVerifier | None:
    """The OIDC verifier of users' bearer tokens: the one given (tests), else from the settings."""
    if given is None and settings.oidc_issuer and settings.oidc_jwks_url:
        return JWKSVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)
    return given


def scheduler_verifier(settings: Settings) -> TokenVerifier | None:
    """A verifier of its own for Cloud Scheduler's ID tokens: these callers are never users."""
    if not settings.scheduler_oidc_audience:
        return None
    if not settings.scheduler_service_accounts:
        log.warning("AGENTRY_SCHEDULER_SERVICE_ACCOUNTS is empty: every scheduled run is refused (403)")
    return JWKSVerifier(
        settings.scheduler_oidc_issuer, settings.scheduler_oidc_audience, settings.scheduler_jwks_url
    )


def build_state(settings: Settings, verifier: TokenVerifier | None, llm: LLM | None) -> AppState:
    store = Store(new_client(settings.google_cloud_project, settings.firestore_database))
    cluster = Cluster(settings.namespace, settings.kubeconfig, settings.kube_timeout_seconds)
    feed = (
        EventFeed.of(settings.google_cloud_project, settings.firestore_database)
        if settings.sse_listen
        else None
    )
    bus = EventBus(store, feed, PeerWake.of(settings, store))
    agent_service = AgentService(store, cluster, bus, settings)
    approval_service = ApprovalService(store, cluster, bus)
    runs = RunService(store, cluster, bus, agent_service, approval_service)
    secret = session_secret(settings)
    notify = Notifications.of(store, settings, WorkflowService(store, cluster, settings), secret)
    bus.notify = notify.outbox.from_bus  # run ends, approvals, paused schedules become notifications
    approval_service.outbox = notify.outbox  # approvals about to expire, escalations
    triggers = TriggerService(store, cluster, agent_service, settings)
    return AppState(
        settings=settings,
        store=store,
        cluster=cluster,
        bus=bus,
        agents=agent_service,
        runs=runs,
        approvals=approval_service,
        sessions=Sessions(secret, settings.session_max_age_seconds),
        verifier=user_verifier(settings, verifier),
        llm=llm if llm is not None else llm_from_settings(settings),
        quotas=Quotas(store, settings),
        scheduler_verifier=scheduler_verifier(settings),
        notifications=notify,
        triggers=triggers,
        hooks=HookReceiver(store, cluster, runs, triggers, settings),
        session_cache=SessionCache(settings.session_cache_seconds),
        revocations=(
            RevocationFeed.of(settings.google_cloud_project, settings.firestore_database)
            if settings.sse_listen and settings.session_cache_seconds > 0
            else None
        ),
    )


def start_watcher(state: AppState) -> Watcher:
    settings = state.settings
    trials = TrialService(state.store, state.cluster, state.bus, state.agents, state.quotas)
    watcher = Watcher(
        state.store,
        state.cluster,
        state.agents,
        state.runs,
        state.approvals,
        settings.sync_retry_seconds,
        settings.approval_check_seconds,
        WorkflowRunFeed(state.store, state.cluster, state.bus, settings.import_owner),
        lambda: trials.sweep(None),
        sweeps=[("triggers", TRIGGER_SWEEP_SECONDS, state.triggers.sweep)] if state.triggers else [],
    )
    watcher.start()
    return watcher


async def close_state(state: AppState) -> None:
    if state.watcher is not None:
        await state.watcher.stop()
    if state.hooks is not None:
        await state.hooks.aclose()
    if state.notifications is not None:
        await state.notifications.dispatcher.stop()
    if state.revocations is not None:
        await asyncio.to_thread(state.revocations.stop)
    if state.bus.peers is not None:
        await state.bus.peers.stop()
    await asyncio.to_thread(state.bus.close)
    if isinstance(state.llm, ProviderLLM):  # ours (built from the settings): its HTTP client
        await state.llm.aclose()
    await state.cluster.close()
    await state.store.close()


class Observe:
    """Pure ASGI middleware: request id (also the correlation id of error bodies), security headers
    (CSP, and HSTS when served over TLS), access metrics by route template (streams pass through)."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        scope[REQUEST_ID] = request_id
        code = 500

        async def send_with_id(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                headers = list(message.get("headers", []))
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                headers += [
                    *SECURITY_HEADERS,
                    (b"content-security-policy", csp_for(scope, content_type)),
                    (b"x-request-id", request_id.encode()),
                ]
                if self.hsts:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(template, scope["method"], str(code)).inc()
            LATENCY.labels(template).observe(time.perf_counter() - started)


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "TooLarge",
    422: "Invalid",
    429: "OverQuota",
    500: "InternalError",
    503: "Unavailable",
}


def correlation_id(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID) or uuid.uuid4().hex)


def _problem(
    request: Request,
    status_code: int,
    detail: Any,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Every error body: `reason` (a stable code), `detail` (what to do about it, never exception
    text), `correlationId` (the request id, also in X-Request-ID and in the API's log)."""
    body = {
        "reason": REASONS.get(status_code, "Error"),
        "detail": detail,
        "correlationId": correlation_id(request),
        **extra,
    }
    return JSONResponse(body, status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _problem(request, exc.status_code, exc.detail, dict(exc.headers or {}) or None)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _problem(request, 404, str(exc))

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return _problem(request, 409, str(exc))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Invalid)
        return _problem(request, 422, [{**e, "type": "value_error"} for e in exc.errors])

    async def over_quota(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OverQuota)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        log.info("quota %s reached (%d) correlation_id=%s", exc.limit, exc.allowed, correlation_id(request))
        return _problem(request, 429, exc.msg, headers, limit=exc.limit, allowed=exc.allowed)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, Unavailable):
            return _problem(request, 503, str(exc), {"Retry-After": str(exc.retry_after)})
        log.warning("cluster unavailable (%s) correlation_id=%s", exc, correlation_id(request))
        return _problem(
            request, 503, "the Kubernetes API server is unavailable; retry shortly", {"Retry-After": "5"}
        )

    async def cluster_refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        code = exc.status.code or 502
        if 400 <= code < 500:  # the API server's reason for refusing the user's input
            return _problem(request, 409, f"the cluster refused: {api_message(exc)}")
        log.warning("the cluster failed (%s) correlation_id=%s", api_message(exc), correlation_id(request))
        return _problem(request, 503, "the Kubernetes API server failed; retry shortly", {"Retry-After": "5"})

    async def firestore_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Firestore error: %s correlation_id=%s", exc, correlation_id(request))
        return _problem(
            request, 503, "the store (Firestore) is unavailable; retry shortly", {"Retry-After": "5"}
        )

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()
        ]  # no "input": a rejected body may contain secrets
        return _problem(request, 422, errors)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        ident = correlation_id(request)
        log.exception("unhandled error on %s %s correlation_id=%s", request.method, request.url.path, ident)
        # This answer is sent by Starlette's outermost middleware, past Observe: its headers here.
        headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
        headers |= {"content-security-policy": OTHER_CSP, "x-request-id": ident}
        if request.app.state.hsts:
            headers[HSTS[0].decode()] = HSTS[1].decode()
        return _problem(request, 500, "internal error; quote the correlationId when reporting it", headers)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(Invalid, invalid)
    app.add_exception_handler(OverQuota, over_quota)
    app.add_exception_handler(Unavailable, unavailable)
    app.add_exception_handler(ClusterUnavailable, unavailable)
    app.add_exception_handler(ApiError, cluster_refused)
    app.add_exception_handler(gexc.GoogleAPICallError, firestore_down)
    app.add_exception_handler(gexc.RetryError, firestore_down)
    app.add_exception_handler(Contended, firestore_down)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(Exception, unexpected)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):  # one line per request, and watch URLs
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))


def lifespan_of(
    settings: Settings, verifier: TokenVerifier | None, llm: LLM | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the state (clients, services) and the watcher, for as long as it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop_metrics = serve_metrics(settings.metrics_port, settings.metrics_address)  # not the API's port
        state = build_state(settings, verifier, llm)
        app.state.agentry = state
        if state.revocations is not None:
            state.revocations.start(asyncio.get_running_loop(), state.sessions_ended)
        if state.bus.peers is not None:
            await state.bus.peers.start(state.bus.wake, state.forget_users)
        if settings.watch:
            state.watcher = start_watcher(state)
            if state.notifications is not None:
                state.notifications.dispatcher.start()
        freeze_startup_heap()  # full collections skip what start-up made (agentry_common/heap.py)
        log.info("API ready: namespace=%s project=%s", settings.namespace, settings.google_cloud_project)
        try:
            yield
        finally:
            stop_metrics()
            await close_state(state)

    return lifespan


def install_routes(app: FastAPI) -> None:
    for module in (
        health,
        session,
        agents,
        memory,
        scheduler,
        executions,
        messages,
        events,
        approvals,
        usage,
        budgets,
        chat,
        workflows,
        triggers,
        hooks,
        trigger_pages,
        notifications,
        notification_pages,
        pages,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")


def too_large(limit: int) -> tuple[bytes, bytes]:
    """The 413 body (its correlation id is in X-Request-ID: BodyLimit renders without the request)."""
    body = {"reason": "TooLarge", "detail": f"request body larger than {limit} bytes"}
    return b"application/json", json.dumps(body).encode()


def install_middleware(app: FastAPI, settings: Settings) -> None:
    # Outermost last: every answer gets Observe's request id; a foreign Host or an oversized body
    # is refused before routing, auth or parsing; a request whose dependency hangs gets its 503.
    app.add_middleware(RequestDeadline, seconds=settings.request_deadline_seconds)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, render=too_large)
    app.add_middleware(TrustedHosts, hosts=settings.trusted_hosts)
    # A JSON error to a page navigation becomes a page (inside Observe, which gives it the page CSP).
    app.add_middleware(BrowserPages, oidc_signin_url=settings.oidc_signin_url)
    app.add_middleware(Observe, hsts=settings.cookie_secure)


def create_app(
    settings: Settings | None = None, verifier: TokenVerifier | None = None, llm: LLM | None = None
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="Agentry",
        version="0.1.0",
        description="Agents, runs, live events, approvals and the agent-designing chat. See docs/api.md.",
        lifespan=lifespan_of(settings, verifier, llm),
        openapi_url="/openapi.json" if settings.openapi else None,  # also /docs, /redoc: an admin's switch
    )
    app.state.hsts = settings.cookie_secure
    install_error_handlers(app)
    install_routes(app)
    install_middleware(app, settings)
    if tracing.setup_tracing(tracing.SERVICE_API):  # off unless OTEL_EXPORTER_OTLP_ENDPOINT
        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics,static")
    return app
