"""The gateway's ASGI app. `create_app()` is the uvicorn factory (`python -m agentry_gateway`).

Routes:
  POST /v1/messages                 Anthropic Messages API (run token)
  POST /v1/chat/completions         OpenAI chat completions (run token)
  POST /v1/agentry/admission        admission decision for the operator (service token)
  POST /v1/agentry/executions/end   an Execution is over: its run tokens admit no more calls (service token)
  GET  /v1/agentry/budgets          budget states of a user/agent (service token)
  GET  /channels                    per-channel health (breakers, recent calls)
  POST /channels/{name}/probe       one minimal real call on a channel (service token)
  GET  /healthz  /readyz  /metrics
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from agentry_common.body_limit import BodyLimit
from agentry_common.models import Provider as Protocol
from agentry_common.tokens import InvalidToken, Keyring

from .config import GatewayConfig, Settings, get_settings, load_config
from .ledger import FirestoreLedger, Ledger, MemoryLedger, Subjects
from .service import MAX_BODY_BYTES, Gateway

log = logging.getLogger("agentry.gateway")


def build_ledger(settings: Settings, config: GatewayConfig) -> Ledger:
    args = (config.budgets, config.calendar, config.thresholds, config.keep_seconds)
    delay = settings.settle_delay_seconds
    if settings.ledger == "memory":
        return MemoryLedger(*args, settle_delay=delay)
    from google.cloud.firestore import AsyncClient

    client = AsyncClient(project=settings.google_cloud_project, database=settings.firestore_database)
    return FirestoreLedger(client, *args, settle_delay=delay)


def build_gateway(
    settings: Settings,
    config: GatewayConfig | None = None,
    keyring: Keyring | None = None,
    ledger: Ledger | None = None,
) -> Gateway:
    config = config or load_config(settings.config_file)
    return Gateway(
        settings,
        config,
        keyring or settings.keyring(),
        ledger or build_ledger(settings, config),
    )


class AdmissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str = Field(min_length=1, max_length=63)
    agent: str = Field(min_length=1, max_length=253)
    user: str | None = Field(default=None, max_length=256, description="owner label; default ns:<namespace>")
    execution: str | None = Field(default=None, max_length=253)
    priority: int = Field(default=5, ge=0, le=10)
    model: str | None = Field(default=None, max_length=128)
    max_wait_seconds: float | None = Field(default=None, alias="maxWaitSeconds", ge=0)


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    execution: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64, description="the Execution's uid, as in its run tokens")


def _too_large(limit: int) -> tuple[bytes, bytes]:
    """413 in the providers' error shape (Anthropic's; OpenAI clients read `error.message` too)."""
    message = f"request larger than {limit // 2**20} MiB"
    error = {"type": "error", "error": {"type": "request_too_large", "message": message}}
    return b"application/json", json.dumps(error).encode()


def create_app(
    settings: Settings | None = None,
    *,
    config: GatewayConfig | None = None,
    keyring: Keyring | None = None,
    ledger: Ledger | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = build_gateway(settings, config, keyring, ledger)
        try:
            yield
        finally:
            await app.state.gateway.aclose()

    app = FastAPI(title="Agentry LLM gateway", version="0.1.0", lifespan=lifespan)
    # Refused before it is read: a token holder cannot make the gateway buffer an endless body.
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, render=_too_large)

    async def gateway(request: Request) -> Gateway:
        # Built by the lifespan; lazily when mounted inside another app (whose lifespan does not
        # run ours).
        gw: Gateway | None = getattr(request.app.state, "gateway", None)
        if gw is None:
            async with lock:
                gw = getattr(request.app.state, "gateway", None)
                if gw is None:
                    gw = build_gateway(settings, config, keyring, ledger)
                    request.app.state.gateway = gw
        return gw

    async def service(request: Request) -> Gateway:
        gw = await gateway(request)
        try:
            gw.authenticate(request, "svc")
        except InvalidToken as exc:
            raise HTTPException(401, f"a service token is required: {exc}") from exc
        return gw

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        return await (await gateway(request)).handle(Protocol.ANTHROPIC, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await (await gateway(request)).handle(Protocol.OPENAI, request)

    @app.post("/v1/agentry/admission")
    async def admission(body: AdmissionIn, request: Request) -> JSONResponse:
        gw = await service(request)
        subjects = Subjects(
            user=body.user or f"ns:{body.namespace}",
            agent=f"{body.namespace}/{body.agent}",
            execution=f"{body.namespace}/{body.execution or '-'}",
        )
        try:
            decision = await gw.ledger.admission(
                subjects,
                priority=body.priority,
                model=body.model,
                cheaper=gw.router.cheaper,
                max_wait_seconds=body.max_wait_seconds,
            )
        except Exception as exc:
            log.exception("admission: budget store read failed")
            raise HTTPException(503, f"the budget store is unavailable ({type(exc).__name__})") from exc
        gw.metrics.decisions.labels(decision.action.value, decision.zone.value).inc()
        out = decision.to_wire()
        if decision.until is not None:
            out["retryAfterSeconds"] = max(1, int(decision.until - gw.ledger.clock()) + 1)
        return JSONResponse(out)

    @app.post("/v1/agentry/executions/end")
    async def end_execution(body: EndIn, request: Request) -> dict[str, Any]:
        gw = await service(request)
        subject = f"{body.namespace}/{body.execution}/{body.uid}"  # as subjects_of() names it
        try:
            newly = await gw.ledger.end_execution(subject)
        except Exception as exc:
            log.exception("end of execution %s: budget store write failed", subject)
            raise HTTPException(503, f"the budget store is unavailable ({type(exc).__name__})") from exc
        if newly:
            log.info("execution %s ended: its run tokens admit no more calls", subject)
        return {"execution": subject, "ended": True, "already": not newly}

    @app.get("/v1/agentry/budgets")
    async def budgets(
        request: Request, namespace: str, agent: str, user: str | None = None
    ) -> dict[str, Any]:
        gw = await service(request)
        subjects = Subjects(
            user=user or f"ns:{namespace}", agent=f"{namespace}/{agent}", execution=f"{namespace}/-"
        )
        now = gw.ledger.clock()
        states = [
            s
            for subject in await gw.ledger.snapshot(subjects)
            for s in subject.states(now, gw.ledger.calendar)
        ]
        return {
            "limits": [
                {**s.to_wire(), "zone": gw.config.thresholds.zone(s.pct).value}
                for s in sorted(states, key=lambda s: -s.pct)
            ]
        }

    @app.get("/channels")
    async def channels(request: Request) -> dict[str, Any]:
        gw = await gateway(request)
        return {"channels": [gw.pool.status(c) for c in gw.config.channels]}

    @app.post("/channels/{name}/probe")
    async def probe(name: str, request: Request) -> dict[str, Any]:
        gw = await service(request)
        try:
            return await gw.probe(name)
        except KeyError:
            raise HTTPException(404, f"no channel named {name!r}") from None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        gw = await gateway(request)
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(gw.ledger.ping(), 5)
            checks["budgetStore"] = "ok"
        except Exception as exc:
            checks["budgetStore"] = f"unavailable: {type(exc).__name__}"
        checks["channels"] = (
            f"{len(gw.config.channels)} configured" if gw.config.channels else "none configured"
        )
        ready = checks["budgetStore"] == "ok" and bool(gw.config.channels)
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        gw = await gateway(request)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
