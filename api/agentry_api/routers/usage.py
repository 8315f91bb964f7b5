"""/api/usage: tokens and cost over a window, per agent and per time bucket."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from ..deps import CurrentUser, StateDep
from ..schemas import UsageOut
from ..services.usage import usage

router = APIRouter(prefix="/api/usage", tags=["usage"])


@router.get("", response_model=UsageOut)
async def get_usage(
    user: CurrentUser, state: StateDep, window: Literal["24h", "7d", "30d"] = "7d"
) -> UsageOut:
    return await usage(state.store, user, window)
