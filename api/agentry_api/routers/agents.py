"""/api/agents: CRUD, and runs (202)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from ..deps import CurrentUser, StateDep
from ..schemas import AgentIn, AgentList, AgentOut, RunAccepted, RunIn
from ..schemas.workflows import BackfillIn
from ..services.errors import Invalid
from ..services.paging import Cursor, Limit, offset_of, page
from ..services.views import agent_out

router = APIRouter(prefix="/api/agents", tags=["agents"])

AGENT_EXAMPLE = {
    "name": "Weekly stock summary",
    "spec": {
        "description": "Summarises the week's stock news",
        "instructions": "Every Monday, summarise last week's stock news in five bullet points.",
        "model": {"provider": "anthropic", "name": "claude-sonnet-4-6"},
        "tools": ["http"],
        "schedule": {"cron": "0 8 * * 1", "timeZone": "Asia/Seoul"},
        "budget": {"maxTurns": 20, "maxCostPerRunUSD": "1.00"},
    },
}

AgentBody = Annotated[AgentIn, Body(examples=[AGENT_EXAMPLE])]


@router.get("", response_model=AgentList)
async def list_agents(
    user: CurrentUser, state: StateDep, limit: Limit = 50, cursor: Cursor = None
) -> AgentList:
    items, next_cursor = page(await state.agents.list(user), offset_of(cursor), limit)
    return AgentList(items=[agent_out(d) for d in items], nextCursor=next_cursor)


@router.post("", response_model=AgentOut, status_code=status.HTTP_201_CREATED)
async def create_agent(user: CurrentUser, state: StateDep, body: AgentBody) -> AgentOut:
    """Store the agent in Firestore and apply its Agent CR. If the cluster is unavailable the agent is
    kept with `sync.state: Pending` and applied as soon as it is back. 429 past the `agents` (or
    `scheduled_agents`) quota, with nothing created."""
    await state.quotas.agent_create(user, body.spec.schedule is not None)
    return agent_out(await state.agents.create(user, body))


@router.get("/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: str, user: CurrentUser, state: StateDep) -> AgentOut:
    return agent_out(await state.agents.get(user, agent_id))


@router.put("/{agent_id}", response_model=AgentOut)
async def update_agent(agent_id: str, user: CurrentUser, state: StateDep, body: AgentBody) -> AgentOut:
    if body.spec.schedule is not None:  # adding a schedule counts against `scheduled_agents`
        await state.quotas.agent_update(user, await state.agents.get(user, agent_id), scheduled=True)
    return agent_out(await state.agents.update(user, agent_id, body))


@router.post("/{agent_id}/backfill", response_model=AgentOut)
async def backfill_agent(agent_id: str, user: CurrentUser, state: StateDep, body: BackfillIn) -> AgentOut:
    """Start the schedule's fire times between `start` and `end` once each: sets the spec's
    `schedule.backfill` (at most 10 runs, else 422 naming it; a time that still has a run is not run
    again). 422 without a schedule; 409 for an agent managed with kubectl; run quotas as for a run."""
    doc = await state.agents.get(user, agent_id)
    spec = dict(doc.get("spec") or {})
    if not spec.get("schedule"):
        raise Invalid(["body"], f"agent {agent_id!r} has no schedule: there are no fire times to backfill")
    await state.quotas.run_start(user)
    spec["schedule"] = {**spec["schedule"], "backfill": body.rfc3339()}
    edited = AgentIn.model_validate({"name": doc["name"], "spec": spec})
    return agent_out(await state.agents.update(user, agent_id, edited))


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(agent_id: str, user: CurrentUser, state: StateDep) -> Response:
    await state.agents.delete(user, agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{agent_id}/runs", response_model=RunAccepted, status_code=status.HTTP_202_ACCEPTED)
async def run_agent(
    agent_id: str, user: CurrentUser, state: StateDep, body: RunIn | None = None
) -> RunAccepted:
    """Start a run: creates an Execution CR and answers 202 at once. Progress arrives on
    `/api/events` (`report` events carrying the same `correlationId`). 429 past the
    `concurrent_runs` or `runs_per_day` quota, with nothing created."""
    await state.agents.get(user, agent_id)  # 404 first: another user's agent is never a quota answer
    await state.quotas.run_start(user)
    doc = await state.runs.run(user, agent_id, body.input if body else None)
    return RunAccepted(
        execution=doc["id"], correlationId=doc["correlationId"], url=f"/api/executions/{doc['id']}"
    )
