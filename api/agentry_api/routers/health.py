"""/healthz (process alive), /readyz (Firestore and the API server answer), /metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import StateDep

router = APIRouter(include_in_schema=False)
CHECK_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    firestore, cluster = await asyncio.gather(_check(state.store.ping()), _check(state.cluster.ping()))
    checks: dict[str, Any] = {"firestore": firestore, "kubernetes": cluster}
    if state.watcher is not None:
        checks["watch"] = state.watcher.state()["healthy"]
    ready = firestore == "ok" and cluster == "ok"
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


@router.get("/metrics")
async def metrics() -> PlainTextResponse:
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)
