"""/api/budgets: the budgets the caller's runs and chat turns are under, and what they decided."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..deps import CurrentUser, StateDep
from ..schemas import BudgetDecisionsOut
from ..services.budget_decisions import DEFAULT_LIMIT, decisions
from ..services.budget_view import BudgetsOut, budgets
from ..services.paging import Limit

router = APIRouter(prefix="/api/budgets", tags=["budgets"])


@router.get("", response_model=BudgetsOut)
async def get_budgets(user: CurrentUser, state: StateDep) -> BudgetsOut:
    """Every budget limit of the LLM gateway that applies to you: your user budget, each of your
    agents', your namespace's and the installation's — use, limit, what remains, zone. Highest use
    first. 503 when the gateway cannot be asked; `governed: false` when there is no gateway."""
    return await budgets(state.settings, user, await state.agents.list(user))


@router.get("/decisions", response_model=BudgetDecisionsOut)
async def get_decisions(
    user: CurrentUser,
    state: StateDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=512, description="nextCursor of the previous page.")
    ] = None,
) -> BudgetDecisionsOut:
    """Your LLM calls the budget did not simply admit — throttled to a cheaper model, made to wait,
    refused — with the zone, the explanation, the run and the time; newest first, `limit` a page."""
    return await decisions(state.store, user, state.settings.namespace, limit, cursor)
