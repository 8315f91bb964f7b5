"""The gateway's HTTP routes, as routers over two dependencies: `gateway` (the app's `Gateway`) and
`require_service_token` (the same, for a caller holding a service token: the operator, the API,
`agentry doctor`, a metrics scraper). Only /healthz and /readyz answer anyone, with a status and no
detail; a run token on a service route gets 403, no token or a bad one 401."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentry_common.governance import (
    ADMISSION_PATH,
    RUN_END_PATH,
    AdmissionDecision,
    AdmissionRequest,
    RunEnd,
    budget_subjects,
)
from agentry_common.models import Provider as Flavour
from agentry_common.tokens import InvalidToken

from .ledger import Subjects
from .service import Gateway

log = logging.getLogger("agentry.gateway")


async def gateway(request: Request) -> Gateway:
    """The app's gateway: built by its lifespan; lazily when the app is mounted inside another one
    (whose lifespan does not run ours), with `app.state.build_gateway`."""
    state = request.app.state
    gw: Gateway | None = getattr(state, "gateway", None)
    if gw is None:
        async with state.gateway_lock:
            gw = getattr(state, "gateway", None)
            if gw is None:
                build: Callable[[], Gateway] = state.build_gateway
                gw = state.gateway = build()
    return gw


GatewayDep = Annotated[Gateway, Depends(gateway)]


async def require_service_token(request: Request, gw: GatewayDep) -> Gateway:
    try:
        gw.authenticate(request, "svc")
    except InvalidToken as exc:
        # A genuine token of the wrong kind (a run pod's) is forbidden here; anything else unknown.
        status = 403 if exc.reason == "wrong_type" else 401
        raise HTTPException(status, f"a service token is required: {exc}") from exc
    return gw


ServiceDep = Annotated[Gateway, Depends(require_service_token)]


def _unavailable(exc: Exception) -> HTTPException:
    """503 without the exception's text (logged by the caller)."""
    return HTTPException(503, "the budget store is unavailable; see the gateway's log")


# -- LLM calls (run token, checked by the call pipeline in the client's protocol) ------------------------

llm = APIRouter()


@llm.post("/v1/messages")
async def messages(request: Request, gw: GatewayDep) -> Response:
    return await gw.handle(Flavour.ANTHROPIC, request)


@llm.post("/v1/chat/completions")
async def chat_completions(request: Request, gw: GatewayDep) -> Response:
    return await gw.handle(Flavour.OPENAI, request)


# -- governance (service token) -----------------------------------------------------------------------

governance = APIRouter(dependencies=[Depends(require_service_token)])


@governance.post(ADMISSION_PATH, response_model=AdmissionDecision)
async def admission(body: AdmissionRequest, gw: ServiceDep) -> JSONResponse:
    subjects = Subjects.of(body.subjects())
    # A run on a model without a price where a limit in USD applies would escape it: refused now.
    model, priority = body.model, body.priority
    unpriced = gw.unpriced_refusal(subjects, model, tuple(Flavour), priority) if model else None
    try:
        decision = unpriced or await gw.ledger.admission(
            subjects,
            priority=body.priority,
            model=body.model,
            cheaper=gw.router.cheaper,
            max_wait_seconds=body.max_wait_seconds,
        )
    except Exception as exc:
        log.exception("admission: budget store read failed")
        raise _unavailable(exc) from exc
    gw.metrics.decisions.labels(decision.action.value, decision.zone.value).inc()
    out = decision.to_wire()
    if decision.until is not None:
        out["retryAfterSeconds"] = max(1, int(decision.until - gw.ledger.clock()) + 1)
    return JSONResponse(out)


@governance.post(RUN_END_PATH)
async def end_execution(body: RunEnd, gw: ServiceDep) -> dict[str, Any]:
    subject = budget_subjects(body.namespace, "-", body.execution, body.uid, None).execution
    try:
        newly = await gw.ledger.end_execution(subject)
    except Exception as exc:
        log.exception("end of execution %s: budget store write failed", subject)
        raise _unavailable(exc) from exc
    if newly:
        log.info("execution %s ended: its run tokens admit no more calls", subject)
    return {"execution": subject, "ended": True, "already": not newly}


@governance.get("/v1/agentry/budgets")
async def budgets(gw: ServiceDep, namespace: str, agent: str, user: str | None = None) -> dict[str, Any]:
    subjects = Subjects.of(budget_subjects(namespace, agent, None, None, user))
    now = gw.ledger.clock()
    states = [
        s for subject in await gw.ledger.snapshot(subjects) for s in subject.states(now, gw.ledger.calendar)
    ]
    return {
        "limits": [
            {**s.to_wire(), "zone": gw.config.thresholds.zone(s.pct).value}
            for s in sorted(states, key=lambda s: -s.pct)
        ]
    }


# -- channels (service token: their state, errors and latencies are operational detail) ------------------

channels = APIRouter(prefix="/channels", dependencies=[Depends(require_service_token)])


@channels.get("")
async def channel_status(gw: ServiceDep) -> dict[str, Any]:
    return {"channels": [gw.pool.status(c) for c in gw.config.channels]}


@channels.post("/{name}/probe")
async def probe(name: str, gw: ServiceDep) -> dict[str, Any]:
    try:
        return await gw.probe(name)
    except KeyError:
        raise HTTPException(404, f"no channel named {name!r}") from None


# -- operations ---------------------------------------------------------------------------------------

ops = APIRouter()


@ops.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@ops.get("/readyz")
async def readyz(gw: GatewayDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(gw.ledger.ping(), 5)
        checks["budgetStore"] = "ok"
    except Exception as exc:
        log.warning("readyz: the budget store does not answer: %s: %s", type(exc).__name__, exc)
        checks["budgetStore"] = "unavailable"
    checks["channels"] = f"{len(gw.config.channels)} configured" if gw.config.channels else "none configured"
    ready = checks["budgetStore"] == "ok" and bool(gw.config.channels)
    return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)


@ops.get("/metrics")
async def metrics(gw: ServiceDep) -> Response:
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


ROUTERS = (llm, governance, channels, ops)
