"""The dashboard's Triggers pages: the list with the create form, and one trigger's page (its URL,
readiness, recent deliveries and the run each started). The key is shown once, by static/triggers.js,
from the answer that created or rotated it; no page ever renders it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..auth import User
from ..deps import StateDep
from .pages import render

router = APIRouter(include_in_schema=False)


@router.get("/triggers", response_class=HTMLResponse)
async def triggers_page(request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        assert state.triggers is not None
        base = str(request.base_url)
        found = [
            state.triggers.out(cr, base).model_dump(mode="json", exclude={"secret"})
            for cr in await state.triggers.owned(user)
        ]
        agents = [{"id": a["id"], "name": a["name"]} for a in await state.agents.list(user)]
        return {"triggers": found, "agents": agents}

    return await render(request, state, "triggers.html", "triggers", load=load)


@router.get("/triggers/{name}", response_class=HTMLResponse)
async def trigger_page(name: str, request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        assert state.triggers is not None
        cr = await state.triggers.reconcile(await state.triggers.get(user, name))
        trigger = state.triggers.out(cr, str(request.base_url)).model_dump(mode="json", exclude={"secret"})
        deliveries = await state.triggers.deliveries(user, name, 50)
        return {"trigger": trigger, "deliveries": [d.model_dump(mode="json") for d in deliveries]}

    return await render(request, state, "trigger.html", "trigger", load=load)
