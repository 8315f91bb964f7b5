"""/api/executions/{id}/messages: continue a finished run with a new message (a follow-up, 201)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ..deps import CurrentUser, StateDep
from ..schemas import ExecutionOut
from ..schemas.follow_ups import MessageIn
from ..services.follow_ups import FollowUps
from ..services.views import execution_out

router = APIRouter(prefix="/api/executions", tags=["executions"])


@router.post("/{name}/messages", response_model=ExecutionOut, status_code=status.HTTP_201_CREATED)
async def post_message(
    name: str, body: MessageIn, user: CurrentUser, state: StateDep, response: Response
) -> ExecutionOut:
    """Continue a finished run: a new Execution of the same agent whose spec.parentRef names this run
    and whose input is `message`; it starts from the whole conversation (docs/runs.md, "Follow-ups").
    404 for a run that is not yours; 409 while the run is live (steering is not available yet), when
    it has no checkpoint journal or its agent is gone; 429 past `concurrent_runs` or `runs_per_day`."""
    follow_ups = FollowUps(state.runs)
    parent = await follow_ups.target(user, name)  # 404 and 409 before any quota answer
    await state.quotas.run_start(user)
    doc = await follow_ups.reply(user, parent, body.message)
    response.headers["location"] = f"/api/executions/{doc['id']}"
    return execution_out(doc)
