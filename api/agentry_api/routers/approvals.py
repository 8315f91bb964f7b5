"""/api/approvals: the inbox, and decisions (202)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from ..deps import CurrentUser, StateDep
from ..schemas import Accepted, ApprovalList, ApprovalOut, DecisionIn
from ..services.paging import Cursor, Limit, offset_of
from ..services.views import approval_out

router = APIRouter(prefix="/api/approvals", tags=["approvals"])


@router.get("", response_model=ApprovalList)
async def list_approvals(
    user: CurrentUser,
    state: StateDep,
    state_filter: Annotated[
        Literal["pending", "approved", "denied", "expired"] | None, Query(alias="state")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ApprovalList:
    """Newest request first."""
    offset = offset_of(cursor)
    docs = await state.store.list_approvals(user.id, state_filter, limit=limit + 1, offset=offset)
    more = len(docs) > limit
    return ApprovalList(
        items=[approval_out(d) for d in docs[:limit]], nextCursor=str(offset + limit) if more else None
    )


@router.get("/{approval_id}", response_model=ApprovalOut)
async def get_approval(approval_id: str, user: CurrentUser, state: StateDep) -> ApprovalOut:
    return approval_out(await state.approvals.get(user, approval_id))


@router.post("/{approval_id}/decision", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def decide(approval_id: str, body: DecisionIn, user: CurrentUser, state: StateDep) -> Accepted:
    """Approve or deny. The decision is appended to the Execution's `spec.approvals`; the operator
    resumes or cancels the run, and the outcome arrives on `/api/events`."""
    doc = await state.approvals.decide(user, approval_id, body.approved, body.reason)
    return Accepted(id=doc["id"], correlationId=doc.get("correlationId"))
