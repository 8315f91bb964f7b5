"""/healthz (process alive), /readyz (Firestore and the API server answer): statuses only, for anyone.

The metrics are not here: they have a port of their own (metrics.serve_metrics).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import StateDep

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
CHECK_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, coro: Any) -> str:
    """ "ok" or "unavailable": the reason goes to the log only (this answers anyone, unauthenticated,
    and exception text names internal hosts, projects and ports)."""
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:
        log.warning("readiness: %s unavailable: %s: %s", name, type(exc).__name__, str(exc)[:300])
        return "unavailable"
    return "ok"


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    firestore, cluster = await asyncio.gather(
        _check("firestore", state.store.ping()), _check("kubernetes", state.cluster.ping())
    )
    checks: dict[str, Any] = {"firestore": firestore, "kubernetes": cluster}
    if state.watcher is not None:
        checks["watch"] = state.watcher.state()["healthy"]
    ready = firestore == "ok" and cluster == "ok"
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)
