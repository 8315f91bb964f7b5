"""The Notifications page: the caller's subscriptions (create, edit, test, delete), recent deliveries
and the dead-letter list with Redeliver (static/notifications.js sends the commands)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from agentry_common.notifications import EventKind

from ..auth import User
from ..deps import StateDep
from .notifications import delivery_out, subscription_out
from .pages import render

router = APIRouter(include_in_schema=False)


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        if state.notifications is None:
            return {"off": True, "subscriptions": [], "deliveries": [], "dead": [], "kinds": []}
        subs = state.notifications.subscriptions
        return {
            "off": False,
            "subscriptions": [subscription_out(d).model_dump() for d in await subs.owned(user)],
            "deliveries": [delivery_out(d).model_dump() for d in await subs.deliveries(user, None, 50)],
            "dead": [delivery_out(d).model_dump() for d in await subs.deliveries(user, "dead", 50)],
            "kinds": [k.value for k in EventKind],
        }

    return await render(request, state, "notifications.html", "notifications", load=load)
