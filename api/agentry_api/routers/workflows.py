"""/api/workflows (CRUD, run now, runs) and /api/workflow-runs/{name} (per-step progress)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response, status

from ..deps import CurrentUser, StateDep
from ..schemas.workflows import (
    BackfillIn,
    WorkflowIn,
    WorkflowList,
    WorkflowOut,
    WorkflowRunIn,
    WorkflowRunList,
    WorkflowRunOut,
)
from ..services.paging import Cursor, Limit, offset_of, page
from ..services.workflows import WorkflowService, run_out, workflow_out

router = APIRouter(tags=["workflows"])

WORKFLOW_EXAMPLE = {
    "name": "Morning brief",
    "spec": {
        "parameters": [{"name": "topic", "default": "technology"}],
        "parallelism": 2,
        "steps": [
            {"name": "read", "agentRef": {"name": "reader-ab12c"}, "input": "News on {{ params.topic }}"},
            {
                "name": "summarise",
                "agentRef": {"name": "summariser-cd34e"},
                "dependsOn": ["read"],
                "input": "{{ steps.read.summary }}",
            },
        ],
    },
}


async def service(state: StateDep) -> WorkflowService:
    return WorkflowService(state.store, state.cluster, state.settings)


Service = Annotated[WorkflowService, Depends(service)]
WorkflowBody = Annotated[WorkflowIn, Body(examples=[WORKFLOW_EXAMPLE])]


@router.get("/api/workflows", response_model=WorkflowList)
async def list_workflows(
    user: CurrentUser, svc: Service, limit: Limit = 50, cursor: Cursor = None
) -> WorkflowList:
    items, next_cursor = page(await svc.owned(user), offset_of(cursor), limit)
    return WorkflowList(items=[workflow_out(cr) for cr in items], nextCursor=next_cursor)


@router.post("/api/workflows", response_model=WorkflowOut, status_code=status.HTTP_201_CREATED)
async def create_workflow(user: CurrentUser, svc: Service, body: WorkflowBody) -> WorkflowOut:
    """Create a Workflow CR. Each step's `agentRef.name` is an Agent id of yours (else 422 naming
    `steps[i].agentRef`); graph errors (cycles, templates, ...) are 422 naming the step and field;
    429 past the `workflows` quota."""
    return workflow_out(await svc.create(user, body))


@router.get("/api/workflows/{name}", response_model=WorkflowOut)
async def get_workflow(name: str, user: CurrentUser, svc: Service) -> WorkflowOut:
    return workflow_out(await svc.get(user, name))


@router.put("/api/workflows/{name}", response_model=WorkflowOut)
async def update_workflow(name: str, user: CurrentUser, svc: Service, body: WorkflowBody) -> WorkflowOut:
    return workflow_out(await svc.update(user, name, body))


@router.delete("/api/workflows/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workflow(name: str, user: CurrentUser, svc: Service) -> Response:
    await svc.delete(user, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/workflows/{name}/runs", response_model=WorkflowRunOut, status_code=status.HTTP_201_CREATED)
async def run_workflow(
    name: str, user: CurrentUser, state: StateDep, svc: Service, body: WorkflowRunIn | None = None
) -> WorkflowRunOut:
    """Run now: a WorkflowRun with these parameters (422 naming `parameters.NAME` if one is unknown
    or a required one is missing). Counts as one run against `concurrent_runs` and `runs_per_day`."""
    workflow = await svc.get(user, name)  # 404 first: another user's workflow is never a quota answer
    await state.quotas.run_start(user)
    run = await svc.start(user, name, body.parameters if body else {})
    return run_out(run, workflow.get("spec") or {})


@router.post("/api/workflows/{name}/backfill", response_model=WorkflowOut)
async def backfill_workflow(
    name: str, user: CurrentUser, state: StateDep, svc: Service, body: BackfillIn
) -> WorkflowOut:
    """Start the schedule's fire times between `start` and `end` once each (at most 10: else 422
    naming `spec.schedule.backfill`; a time that still has a run is not run again). 422 when the
    Workflow has no schedule; the run quotas apply as for run now."""
    await svc.get(user, name)
    await state.quotas.run_start(user)
    return workflow_out(await svc.backfill(user, name, body))


@router.get("/api/workflows/{name}/runs", response_model=WorkflowRunList)
async def list_runs(
    name: str, user: CurrentUser, svc: Service, limit: Limit = 50, cursor: Cursor = None
) -> WorkflowRunList:
    workflow = await svc.get(user, name)
    items, next_cursor = page(await svc.runs(user, name), offset_of(cursor), limit)
    spec = workflow.get("spec") or {}
    return WorkflowRunList(items=[run_out(r, spec) for r in items], nextCursor=next_cursor)


@router.get("/api/workflow-runs/{name}", response_model=WorkflowRunOut)
async def get_run(name: str, user: CurrentUser, svc: Service) -> WorkflowRunOut:
    """Per-step phase, attempts, Execution, timings, tokens and cost, and the run's totals."""
    return await svc.run(user, name)
