"""The checkpoint routes. A run token reads its own run's journal (by its Execution's uid) and
appends to it, and reads its parent's when it names one (a follow-up); a token of an ended run is
refused (403), as the LLM routes refuse its calls. Pruning is the operator's (a service token)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from agentry_common.checkpoints import (
    BESIDE_CALL_HEADER,
    CHECKPOINT_PATH,
    CHECKPOINT_PRUNE_PATH,
    AppendAnswer,
    AppendRequest,
    Journal,
    PruneRequest,
)
from agentry_common.tokens import Claims, InvalidToken

from ..routes import GatewayDep, ServiceDep
from ..service import Gateway
from .boundary import own_run, record, run_ended
from .store import Conflict, Refused, RunRef

log = logging.getLogger("agentry.gateway.checkpoints")

router = APIRouter()


def _refuse(gw: Gateway, status: int, reason: str, detail: str) -> NoReturn:
    gw.metrics.checkpoint_refused.labels(reason).inc()
    raise HTTPException(status, detail)


def _unavailable(gw: Gateway, what: str, exc: Exception) -> NoReturn:
    # The exception's type only: its text could quote a document (entries are never logged).
    log.error("checkpoint %s: the store failed: %s", what, type(exc).__name__)
    _refuse(gw, 503, "unavailable", "the checkpoint store is unavailable; see the gateway's log")


async def run_claims(request: Request, gw: GatewayDep) -> Claims:
    """The caller's run token, if its run has an Execution uid and has not ended."""
    try:
        claims = gw.authenticate(request, "run")
    except InvalidToken as exc:
        wrong = exc.reason == "wrong_type"  # a genuine token of another kind: forbidden, not unknown
        _refuse(gw, 403 if wrong else 401, "unauthorized", f"a run token is required: {exc}")
    if not claims.execution_uid:
        _refuse(gw, 403, "no_execution", "this run token names no Execution uid: it has no journal")
    try:
        ended = await run_ended(gw.ledger, claims)
    except Exception as exc:
        _unavailable(gw, "authentication", exc)
    if ended is not None:
        when = dt.datetime.fromtimestamp(ended, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        name = f"{claims.namespace}/{claims.execution}"
        detail = f"Execution {name} ended at {when}; its run token is no longer valid"
        _refuse(gw, 403, "ended", detail)
    return claims


RunClaims = Annotated[Claims, Depends(run_claims)]


@router.get(CHECKPOINT_PATH, response_model=Journal)
async def read_journal(
    claims: RunClaims,
    gw: GatewayDep,
    of: Annotated[Literal["parent"] | None, Query(description="`parent`: the parent's journal")] = None,
    after: Annotated[int, Query(ge=0, description="entries with seq above this")] = 0,
) -> JSONResponse:
    run = own_run(claims)
    if of == "parent":
        if not claims.parent_uid:
            _refuse(gw, 403, "no_parent", "this run has no parent: only a follow-up's token reads one")
        run = RunRef(claims.namespace, claims.parent_uid, claims.parent)
    try:
        page = await gw.checkpoints.read(run, after)
    except Exception as exc:
        _unavailable(gw, "read", exc)
    journal = Journal(
        namespace=run.namespace,
        execution=page.execution or run.execution,
        uid=run.uid,
        last=page.last,
        entries=page.entries,
        more=page.more,
    )
    return JSONResponse(journal.wire())


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


def _parse_append(gw: Gateway, raw: bytes) -> AppendRequest:
    """The body, checked: 413 above the entries-per-append limit (before the model's own bound
    answers 422), 422 naming the field that is wrong."""
    try:
        body: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        _refuse(gw, 422, "invalid", "the body is not JSON")
    entries = body.get("entries") if isinstance(body, dict) else None
    limit = gw.checkpoints.limits.per_append
    if isinstance(entries, list) and len(entries) > limit:
        _refuse(gw, 413, "entries_per_append", f"{len(entries)} entries in one append; at most {limit}")
    try:
        return AppendRequest.model_validate(body)
    except ValidationError as exc:
        _refuse(gw, 422, "invalid", _field_errors(exc))


async def calls_first(request: Request, gw: GatewayDep) -> None:
    """An append beside its run's model call lets the calls being routed go first (beside.py); a
    route dependency, so it waits before the token is even checked."""
    if request.headers.get(BESIDE_CALL_HEADER) and await gw.calls_first.wait():
        gw.metrics.checkpoint_held.inc()


@router.post(CHECKPOINT_PATH, response_model=AppendAnswer, dependencies=[Depends(calls_first)])
async def append(request: Request, claims: RunClaims, gw: GatewayDep) -> JSONResponse:
    body = _parse_append(gw, await request.body())
    try:
        done = await gw.checkpoints.append(own_run(claims), body.entries, body.delivered, body.close)
    except Conflict as exc:
        gw.metrics.checkpoint_conflicts.inc()
        return JSONResponse({"detail": exc.detail, "last": exc.last}, 409)
    except Refused as exc:
        _refuse(gw, exc.status, exc.reason, exc.detail)
    except Exception as exc:
        _unavailable(gw, "append", exc)
    record(gw.metrics, done)
    answer = AppendAnswer(last=done.last, inbox=done.inbox, closed=done.closed)
    # {"last": N} alone while steering has nothing to say (agentry_common.steering)
    return JSONResponse(answer.model_dump(by_alias=True, mode="json", exclude_defaults=True))


@router.post(CHECKPOINT_PRUNE_PATH)
async def prune(body: PruneRequest, gw: ServiceDep) -> dict[str, int]:
    try:
        pruned = await gw.checkpoints.prune(body.runs)
    except Exception as exc:
        _unavailable(gw, "prune", exc)
    if pruned:
        log.info("pruned %d checkpoint journal(s)", pruned)
    return {"pruned": pruned}
