"""/api/executions: list (filter, cursor pagination), detail with its thread, cancel (202), logs, LLM
calls. Follow-ups: routers/messages.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from agentry_common.models import Phase

from ..deps import CurrentUser, StateDep
from ..schemas import Accepted, ExecutionPage, LlmCallsOut, LogsOut
from ..schemas.follow_ups import ExecutionDetail
from ..services.calls import execution_calls
from ..services.follow_ups import execution_detail
from ..services.views import execution_out

router = APIRouter(prefix="/api/executions", tags=["executions"])


@router.get("", response_model=ExecutionPage)
async def list_executions(
    user: CurrentUser,
    state: StateDep,
    agent: Annotated[str | None, Query(max_length=253, description="Only runs of this agent id.")] = None,
    phase: Phase | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=1024, description="nextCursor of the previous page.")
    ] = None,
) -> ExecutionPage:
    docs, next_cursor = await state.runs.list(user, agent, phase.value if phase else None, limit, cursor)
    return ExecutionPage(items=[execution_out(d) for d in docs], nextCursor=next_cursor)


@router.get("/{name}", response_model=ExecutionDetail)
async def get_execution(name: str, user: CurrentUser, state: StateDep) -> ExecutionDetail:
    """The run, with its thread: the runs it continues and those that continue it (follow-ups)."""
    return await execution_detail(state.runs, user, name)


@router.post("/{name}/cancel", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def cancel_execution(name: str, user: CurrentUser, state: StateDep) -> Accepted:
    doc = await state.runs.cancel(user, name)
    return Accepted(id=doc["id"], correlationId=doc.get("correlationId"))


@router.get("/{name}/logs", response_model=LogsOut)
async def execution_logs(name: str, user: CurrentUser, state: StateDep) -> LogsOut:
    """The run's pod log while the pod exists; otherwise its stored events (`source: events`)."""
    return LogsOut(**await state.runs.logs(user, name))


@router.get("/{name}/calls", response_model=LlmCallsOut)
async def execution_llm_calls(name: str, user: CurrentUser, state: StateDep) -> LlmCallsOut:
    """The run's calls through the LLM gateway (model used, fallbacks, tokens, cost, latency) and
    their totals; 404 exactly as for the Execution."""
    return await execution_calls(state.runs, user, name)
