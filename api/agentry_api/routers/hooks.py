"""POST /hooks/{name}: a trigger's deliveries. No session or token: the HMAC signature is the credential
(services/hooks.py); the answer is 202 with the run, or a 4xx whose detail starts with the reason."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from ..deps import StateDep
from ..schemas.triggers import HookAccepted
from ..services.hooks import Refused

router = APIRouter(tags=["hooks"])


@router.post("/hooks/{name}", response_model=HookAccepted, status_code=status.HTTP_202_ACCEPTED)
async def deliver(name: str, request: Request, state: StateDep) -> HookAccepted:
    assert state.hooks is not None  # built by the lifespan
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        return await state.hooks.deliver(name, headers, request.stream())
    except Refused as exc:
        extra = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        raise HTTPException(exc.status, f"{exc.refusal.value}: {exc.message}", headers=extra) from None
