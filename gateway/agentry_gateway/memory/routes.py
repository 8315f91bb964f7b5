"""The memory routes. A run token with the `mem` claim reads and writes its Agent's store (an ended
run's token is refused, 403, as on the checkpoint routes); a token without it gets 403. The API
reads and edits a store, and the operator drops the stores of Agents that are gone, with a service
token."""

from __future__ import annotations

import logging
from typing import Annotated, NoReturn

from fastapi import APIRouter, HTTPException, Path, Query, Response

from agentry_common.memory import (
    MAX_QUERY_CHARS,
    MAX_SEARCH_RESULTS,
    MEMORY_DROP_PATH,
    MEMORY_KEY_PATH,
    MEMORY_PATH,
    MEMORY_STORE_KEY_PATH,
    MEMORY_STORE_PATH,
    MEMORY_STORES_PATH,
    DropAnswer,
    DropRequest,
    MemoryEntry,
    MemoryList,
    MemoryWrite,
    StoreList,
    StoreRef,
    key_problem,
    matches,
    store_limit,
    value_problem,
)
from agentry_common.tokens import Claims

from ..checkpoints.routes import RunClaims
from ..routes import GatewayDep, ServiceDep
from ..service import Gateway
from .store import Full, MemoryStore, Owner

log = logging.getLogger("agentry.gateway.memory")

router = APIRouter()

Query_ = Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="words to search for")]
Namespace = Annotated[str, Path(min_length=1, max_length=63)]
AgentUid = Annotated[str, Path(min_length=1, max_length=128)]


def _unavailable(what: str, exc: Exception) -> NoReturn:
    # The exception's type only: its text could quote an entry (values are never logged).
    log.error("memory %s: the store failed: %s", what, type(exc).__name__)
    raise HTTPException(503, "the memory store is unavailable; see the gateway's log")


def _store(gw: Gateway) -> MemoryStore:
    return gw.memories


def _own(claims: Claims) -> Owner:
    if not claims.memory:
        raise HTTPException(403, "this run's Agent has no memory (spec.memory.enabled is false)")
    return Owner(claims.namespace, claims.memory, claims.agent)


def _checked_key(key: str) -> str:
    problem = key_problem(key)
    if problem:
        raise HTTPException(422, f"key: {problem}")
    return key


async def _list(gw: Gateway, owner: Owner, q: str | None, limit: int | None) -> MemoryList:
    try:
        entries = await _store(gw).entries(owner)
    except Exception as exc:
        _unavailable("list", exc)
    count = len(entries)
    if q and q.strip():
        entries = [e for e in entries if matches(q, e.key, e.value)][:MAX_SEARCH_RESULTS]
    return MemoryList(entries=entries, count=count, max_entries=limit)


async def _get(gw: Gateway, owner: Owner, key: str) -> MemoryEntry:
    try:
        entry = await _store(gw).get(owner, _checked_key(key))
    except HTTPException:
        raise
    except Exception as exc:
        _unavailable("read", exc)
    if entry is None:
        raise HTTPException(404, f"no memory entry {key!r}")
    return entry


async def _put(gw: Gateway, owner: Owner, key: str, value: str, by: str, limit: int) -> MemoryEntry:
    _checked_key(key)
    problem = value_problem(value)
    if problem:
        raise HTTPException(413, f"value: {problem}")
    try:
        return await _store(gw).put(owner, key, value, by, store_limit(limit))
    except Full as exc:
        raise HTTPException(409, str(exc)) from None
    except Exception as exc:
        _unavailable("write", exc)


async def _delete(gw: Gateway, owner: Owner, key: str) -> Response:
    try:
        existed = await _store(gw).delete(owner, _checked_key(key))
    except HTTPException:
        raise
    except Exception as exc:
        _unavailable("delete", exc)
    if not existed:
        raise HTTPException(404, f"no memory entry {key!r}")
    return Response(status_code=204)


# -- a run's own Agent's store (run token) ---------------------------------------------------------------


@router.get(MEMORY_PATH, response_model=MemoryList, response_model_by_alias=True)
async def run_list(claims: RunClaims, gw: GatewayDep, q: Query_ = None) -> MemoryList:
    return await _list(gw, _own(claims), q, store_limit(claims.memory_limit))


@router.get(MEMORY_KEY_PATH, response_model=MemoryEntry, response_model_by_alias=True)
async def run_get(key: str, claims: RunClaims, gw: GatewayDep) -> MemoryEntry:
    return await _get(gw, _own(claims), key)


@router.put(MEMORY_KEY_PATH, response_model=MemoryEntry, response_model_by_alias=True)
async def run_put(key: str, body: MemoryWrite, claims: RunClaims, gw: GatewayDep) -> MemoryEntry:
    owner = _own(claims)
    if body.updated_by is not None or body.max_entries is not None or body.agent is not None:
        raise HTTPException(422, "body: a run names only `value` (its token says who writes, and the limit)")
    return await _put(gw, owner, key, body.value, claims.execution, claims.memory_limit)


@router.delete(MEMORY_KEY_PATH, status_code=204)
async def run_delete(key: str, claims: RunClaims, gw: GatewayDep) -> Response:
    return await _delete(gw, _own(claims), key)


# -- any Agent's store (service token: the API, the operator) ---------------------------------------------


@router.get(MEMORY_STORES_PATH, response_model=StoreList, response_model_by_alias=True)
async def svc_stores(gw: ServiceDep) -> StoreList:
    try:
        owners = await _store(gw).stores()
    except Exception as exc:
        _unavailable("stores", exc)
    return StoreList(
        stores=[StoreRef(namespace=o.namespace, agent_uid=o.agent_uid, agent=o.agent) for o in owners]
    )


@router.get(MEMORY_STORE_PATH, response_model=MemoryList, response_model_by_alias=True)
async def svc_list(namespace: Namespace, agent_uid: AgentUid, gw: ServiceDep, q: Query_ = None) -> MemoryList:
    return await _list(gw, Owner(namespace, agent_uid), q, None)


@router.put(MEMORY_STORE_KEY_PATH, response_model=MemoryEntry, response_model_by_alias=True)
async def svc_put(
    namespace: Namespace, agent_uid: AgentUid, key: str, body: MemoryWrite, gw: ServiceDep
) -> MemoryEntry:
    owner = Owner(namespace, agent_uid, body.agent or "")
    by = body.updated_by or "service"
    return await _put(gw, owner, key, body.value, by, body.max_entries or 0)


@router.delete(MEMORY_STORE_KEY_PATH, status_code=204)
async def svc_delete(namespace: Namespace, agent_uid: AgentUid, key: str, gw: ServiceDep) -> Response:
    return await _delete(gw, Owner(namespace, agent_uid), key)


@router.post(MEMORY_DROP_PATH, response_model=DropAnswer, response_model_by_alias=True)
async def svc_drop(body: DropRequest, gw: ServiceDep) -> DropAnswer:
    owners = [Owner(s.namespace, s.agent_uid) for s in body.stores]
    try:
        dropped = await _store(gw).drop(owners)
    except Exception as exc:
        _unavailable("drop", exc)
    if dropped:
        log.info("dropped %d memory store(s)", dropped)
    return DropAnswer(dropped=dropped)
