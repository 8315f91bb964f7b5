"""The dashboard: server-rendered pages; a little JS (static/app.js) keeps them live from /api/events.

A first visit creates a guest session (signed HttpOnly cookie) where guests are on; otherwise, and past
the guest limit, the answer is the sign-in page (browser.py). Lists are filled from the SSE
snapshot and kept current by `report` events; detail pages are rendered from Firestore and then
updated by the same events (a run's LLM calls, which are not events, are re-read while it is active).
Buttons send commands (202) and never update the page from the answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates

from ..auth import User
from ..deps import AppState, StateDep, authenticate, unauthorized
from ..services.budgets.decisions import decisions
from ..services.budgets.view import BudgetsOut, budgets
from ..services.calls import execution_calls
from ..services.errors import NotFound, Unavailable
from ..services.follow_ups import FollowUps
from ..services.usage import usage
from ..services.usage_charts import cost_over_time, usage_charts
from ..services.views import agent_out, approval_out, execution_out
from ..services.workflows import WorkflowService, run_out, workflow_out
from .session import new_guest, set_session

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "web" / "templates")
templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)


async def page_user(request: Request, state: AppState) -> tuple[User, str | None]:
    """The signed-in user, or a new guest and the session to set in its cookie. Neither: 401, or 429
    past the guest limit of this address; a browser gets them as the sign-in page (browser.py)."""
    user = await authenticate(request, state)
    if user is not None:
        return user, None
    if not state.settings.guest_sessions:
        raise unauthorized("guest sessions are off on this server: sign in")
    return await new_guest(state, request)


async def render(request: Request, state: AppState, template: str, page: str, **context: Any) -> Response:
    user, new = await page_user(request, state)
    loader = context.pop("load", None)
    if loader is not None:
        try:
            context.update(await loader(user))
        except NotFound as exc:
            response = templates.TemplateResponse(
                request,
                "notfound.html",
                {"page": "notfound", "user": user, "message": str(exc)},
                status_code=404,
            )
            if new is not None:
                set_session(response, state, new)
            return response
    response = templates.TemplateResponse(request, template, {"page": page, "user": user, **context})
    if new is not None:
        set_session(response, state, new)
    return response


@router.get("/", response_class=HTMLResponse)
async def agents_page(request: Request, state: StateDep) -> Response:
    return await render(request, state, "agents.html", "agents")


@router.get("/agents/new", response_class=HTMLResponse)
async def new_agent_page(request: Request, state: StateDep) -> Response:
    return await render(request, state, "agent_form.html", "agent-form", agent=None)


@router.get("/agents/{agent_id}", response_class=HTMLResponse)
async def agent_page(agent_id: str, request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        return {"agent": agent_out(await state.agents.get(user, agent_id)).model_dump(mode="json")}

    return await render(request, state, "agent.html", "agent", load=load)


@router.get("/agents/{agent_id}/edit", response_class=HTMLResponse)
async def edit_agent_page(agent_id: str, request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        return {"agent": agent_out(await state.agents.get(user, agent_id)).model_dump(mode="json")}

    return await render(request, state, "agent_form.html", "agent-form", load=load)


@router.get("/executions", response_class=HTMLResponse)
async def executions_page(request: Request, state: StateDep) -> Response:
    return await render(request, state, "executions.html", "executions")


@router.get("/executions/{name}", response_class=HTMLResponse)
async def execution_page(name: str, request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        doc = await state.runs.get(user, name)
        approvals = [
            approval_out(a).model_dump(mode="json")
            for a in await state.store.list_approvals(user.id)
            if a.get("execution") == name
        ]
        events = [
            {"seq": e["seq"], "kind": e["kind"], **(e.get("data") or {}), "eventTime": e.get("createdAt")}
            for e in await state.store.execution_events(user.id, name)
        ]
        return {
            "execution": execution_out(doc).model_dump(mode="json"),
            "thread": [t.model_dump(mode="json") for t in await FollowUps(state.runs).thread(user, doc)],
            "approvals": approvals,
            "events": events,
            "calls": (await execution_calls(state.runs, user, name)).model_dump(mode="json"),
        }

    return await render(request, state, "execution.html", "execution", load=load)


@router.get("/executions/{name}/calls", response_class=HTMLResponse)
async def execution_calls_part(name: str, request: Request, state: StateDep) -> Response:
    """The LLM-calls part of a run page alone: app.js refreshes it while the run is not over (calls
    are metered by the gateway, not reported on the event stream). Never creates a guest session."""
    user = await authenticate(request, state)
    if user is None:
        return PlainTextResponse("sign in to see this run", status_code=401)
    try:
        calls = await execution_calls(state.runs, user, name)
    except NotFound as exc:
        return PlainTextResponse(str(exc), status_code=404)  # text: the name is the caller's input
    response = templates.TemplateResponse(request, "_calls.html", {"calls": calls.model_dump(mode="json")})
    response.headers["cache-control"] = "no-store"
    return response


def workflow_service(state: AppState) -> WorkflowService:
    return WorkflowService(state.store, state.cluster, state.settings)


@router.get("/workflows", response_class=HTMLResponse)
async def workflows_page(request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        found = await workflow_service(state).owned(user)
        agents = [{"id": a["id"], "name": a["name"]} for a in await state.agents.list(user)]
        return {"workflows": [workflow_out(cr).model_dump(mode="json") for cr in found], "agents": agents}

    return await render(request, state, "workflows.html", "workflows", load=load)


@router.get("/workflows/{ident}", response_class=HTMLResponse)
async def workflow_page(ident: str, request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        svc = workflow_service(state)
        cr = await svc.get(user, ident)
        runs = [run_out(r, cr.get("spec") or {}).model_dump(mode="json") for r in await svc.runs(user, ident)]
        agents = [{"id": a["id"], "name": a["name"]} for a in await state.agents.list(user)]
        return {"workflow": workflow_out(cr).model_dump(mode="json"), "runs": runs[:50], "agents": agents}

    return await render(request, state, "workflow.html", "workflow", load=load)


@router.get("/workflow-runs/{name}", response_class=HTMLResponse)
async def workflow_run_page(name: str, request: Request, state: StateDep) -> Response:
    """The run's graph is drawn by static/workflows.js from /api/workflow-runs/{name}, polled."""

    async def load(user: User) -> dict[str, Any]:
        return {"run": (await workflow_service(state).run(user, name)).model_dump(mode="json")}

    return await render(request, state, "workflow_run.html", "workflow-run", load=load)


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        docs = await state.store.list_approvals(user.id)
        return {
            "decided": [approval_out(d).model_dump(mode="json") for d in docs if d.get("state") != "pending"]
        }

    return await render(request, state, "approvals.html", "approvals", load=load)


@router.get("/usage", response_class=HTMLResponse)
async def usage_page(request: Request, state: StateDep, window: str = "7d") -> Response:
    window = window if window in ("24h", "7d", "30d") else "7d"

    async def load(user: User) -> dict[str, Any]:
        used = await usage(state.store, user, window)
        pools = None  # the warm pools' idle cost, while pods wait: a line of the page, never its failure
        try:
            cost = await state.cluster.pool_idle_cost()
            pools = cost.describe() if cost.pods else None
        except Exception:
            pass
        charts = usage_charts(used)
        return {"usage": used.model_dump(mode="json"), "window": window, "charts": charts, "pools": pools}

    return await render(request, state, "usage.html", "usage", load=load)


@router.get("/budgets", response_class=HTMLResponse)
async def budgets_page(request: Request, state: StateDep) -> Response:
    """The limits the caller is under (from the gateway: when it cannot be asked, the page says so and
    still shows the decisions and the spend), the budget's decisions on their calls, spend per day."""

    async def load(user: User) -> dict[str, Any]:
        limits: BudgetsOut | None = None
        error = None
        try:
            limits = await budgets(state.settings, user, await state.agents.list(user))
        except Unavailable as exc:
            error = str(exc)
        steered = await decisions(state.store, user, state.settings.namespace)
        spend = cost_over_time(await usage(state.store, user, "30d"))
        return {
            "budgets": limits.model_dump(mode="json") if limits else None,
            "budgets_error": error,
            "decisions": steered.model_dump(mode="json"),
            "spend_chart": spend,
        }

    return await render(request, state, "budgets.html", "budgets", load=load)


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, state: StateDep) -> Response:
    async def load(user: User) -> dict[str, Any]:
        return {"tokens": await state.store.list_tokens(user.id)}

    return await render(request, state, "settings.html", "settings", load=load)
