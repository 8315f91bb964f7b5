"""The steering routes (agentry_common.steering): the API posts a person's message into a run's inbox
and lists a run's messages (a service token); the run reads its own queued messages (its run token,
as for its journal), waiting for one with `wait` (a long poll)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from agentry_common.governance import budget_subjects
from agentry_common.steering import (
    INBOX_PATH,
    MAX_WAIT_SECONDS,
    POLL_SECONDS,
    STEER_PATH,
    Inbox,
    Refusal,
    SteerAnswer,
    SteerRefused,
    SteerRequest,
)

from ..routes import GatewayDep, ServiceDep
from ..service import Gateway
from .boundary import own_run
from .inbox import InboxRefused
from .routes import RunClaims
from .store import RunRef

log = logging.getLogger("agentry.gateway.steering")

router = APIRouter()


def _unavailable(gw: Gateway, what: str, exc: Exception) -> JSONResponse:
    log.error("steering %s: the store failed: %s", what, type(exc).__name__)
    gw.metrics.checkpoint_refused.labels("unavailable").inc()
    return JSONResponse({"detail": "the checkpoint store is unavailable; see the gateway's log"}, 503)


def _refused(reason: Refusal, detail: str, status: int = 409) -> JSONResponse:
    return JSONResponse(SteerRefused(detail=detail, reason=reason).wire(), status)


@router.post(STEER_PATH, response_model=SteerAnswer, status_code=202)
async def post_message(body: SteerRequest, gw: ServiceDep) -> JSONResponse:
    """A message for a run: 202 queued; 409 `closed` (the run has ended: make a follow-up), 409
    `pending` (double-texting reject), 429 `full`."""
    subject = budget_subjects(body.namespace, "-", body.execution, body.uid, None).execution
    run = RunRef(body.namespace, body.uid, body.execution)
    try:
        if await gw.ledger.ended_at(subject) is not None:
            return _refused(Refusal.CLOSED, f"run {body.execution} has ended: continue it with a follow-up")
        answer = await gw.checkpoints.post(run, body)
    except InboxRefused as exc:
        return _refused(exc.refusal, exc.detail, exc.status)
    except Exception as exc:
        return _unavailable(gw, "post", exc)
    return JSONResponse(answer.wire(), 202)


@router.get(STEER_PATH, response_model=Inbox)
async def list_messages(
    gw: ServiceDep,
    namespace: Annotated[str, Query(min_length=1, max_length=63)],
    uid: Annotated[str, Query(min_length=1, max_length=64)],
) -> JSONResponse:
    """Every message of a run, any state, oldest first."""
    try:
        inbox = await gw.checkpoints.inbox(RunRef(namespace, uid), 0, every=True)
    except Exception as exc:
        return _unavailable(gw, "list", exc)
    return JSONResponse(inbox.wire())


@router.get(INBOX_PATH, response_model=Inbox)
async def read_inbox(
    claims: RunClaims,
    gw: GatewayDep,
    after: Annotated[int, Query(ge=0, description="messages with seq above this")] = 0,
    wait: Annotated[int, Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for one")] = 0,
) -> JSONResponse:
    """The token's own run's queued messages after `after`; with `wait`, answered as soon as one is
    queued or the inbox closes, or after `wait` seconds with none."""
    run = own_run(claims)
    deadline = asyncio.get_running_loop().time() + wait
    try:
        while True:
            inbox = await gw.checkpoints.inbox(run, after)
            if inbox.messages or inbox.closed or asyncio.get_running_loop().time() >= deadline:
                return JSONResponse(inbox.wire())
            await asyncio.sleep(POLL_SECONDS)
    except Exception as exc:
        return _unavailable(gw, "inbox", exc)
