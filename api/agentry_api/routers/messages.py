"""/api/executions/{id}/messages: a message for a run. A live run (Pending or Running) is steered:
the message waits in its inbox for its next turn boundary (202). A finished run is continued: a
follow-up, a new Execution (201). `/interrupt` ends a live run's current turn (docs/runs.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from ..auth import User
from ..deps import CurrentUser, StateDep
from ..schemas import ExecutionOut
from ..schemas.steering import InterruptIn, MessageOrInterrupt, Steered, SteeringOut
from ..services.errors import Conflict, Invalid
from ..services.follow_ups import FollowUps
from ..services.runs import TERMINAL
from ..services.steering import Closed, Steering
from ..services.views import execution_out

router = APIRouter(prefix="/api/executions", tags=["executions"])

ANSWERS: dict[int | str, dict[str, Any]] = {
    201: {"model": ExecutionOut, "description": "A finished run: the follow-up that continues it."},
    202: {"model": Steered, "description": "A live run: the message, queued for its next turn boundary."},
}


async def _follow_up(state: StateDep, user: User, name: str, message: str) -> JSONResponse:
    if not message.strip():
        raise Invalid(["body", "message"], "a finished run is continued with a message: write one")
    follow_ups = FollowUps(state.runs)
    parent = await follow_ups.target(user, name)  # 404 and 409 before any quota answer
    await state.quotas.run_start(user)
    doc = await follow_ups.reply(user, parent, message)
    body = execution_out(doc).model_dump(mode="json")
    return JSONResponse(body, status.HTTP_201_CREATED, headers={"location": f"/api/executions/{doc['id']}"})


async def _send(state: StateDep, user: User, name: str, message: str, interrupt: bool) -> JSONResponse:
    doc = await state.runs.get(user, name)  # 404 for a run that is not yours
    steering = Steering(state.runs, state.settings)
    if (doc.get("phase") or "") not in TERMINAL:
        try:
            steered = await steering.send(user, doc, message, interrupt)
            return JSONResponse(steered.model_dump(mode="json"), status.HTTP_202_ACCEPTED)
        except Closed:
            await steering.finished(name)  # it journaled its end: continued once it has finished
    if interrupt:
        raise Conflict(f"run {name!r} has finished: there is nothing to interrupt")
    return await _follow_up(state, user, name, message)


@router.post("/{name}/messages", response_model=None, status_code=status.HTTP_201_CREATED, responses=ANSWERS)
async def post_message(
    name: str, body: MessageOrInterrupt, user: CurrentUser, state: StateDep
) -> JSONResponse:
    """A message for a run. Running or Pending (runtime agentry, with the LLM gateway): 202, queued in
    the run's inbox and delivered at its next turn boundary (`interrupt: true` ends the current turn
    first); 409 waiting for an approval, runtime claude-code, no gateway, or a message already queued
    under the agent's double-texting policy `reject`. Finished: 201, a follow-up (a new Execution of
    the same agent continuing the whole conversation); 409 without a checkpoint journal; 429 at the run
    quotas. A run that ends as the message arrives is continued by a follow-up. 404: not yours."""
    return await _send(state, user, name, body.message, body.interrupt)


@router.post(
    "/{name}/interrupt", response_model=Steered, status_code=status.HTTP_202_ACCEPTED, responses=ANSWERS
)
async def interrupt(
    name: str, user: CurrentUser, state: StateDep, body: InterruptIn | None = None
) -> JSONResponse:
    """End a live run's current turn at its next checkpoint; with a message, it goes on with that,
    else it ends or waits for the next message (the agent's `spec.steering.onInterrupt`)."""
    return await _send(state, user, name, body.message.strip() if body else "", True)


@router.get("/{name}/messages", response_model=SteeringOut)
async def list_messages(name: str, user: CurrentUser, state: StateDep) -> SteeringOut:
    """The run's steering messages with their states, and the agent's steering policies."""
    doc = await state.runs.get(user, name)
    return await Steering(state.runs, state.settings).messages(user, doc)
