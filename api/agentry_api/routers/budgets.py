"""/api/budgets: the budgets the caller's runs and chat turns are under (read only)."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import CurrentUser, StateDep
from ..services.budget_view import BudgetsOut, budgets

router = APIRouter(prefix="/api/budgets", tags=["budgets"])


@router.get("", response_model=BudgetsOut)
async def get_budgets(user: CurrentUser, state: StateDep) -> BudgetsOut:
    """Every budget limit of the LLM gateway that applies to you: your user budget, each of your
    agents', your namespace's and the installation's — use, limit, what remains, zone. Highest use
    first. 503 when the gateway cannot be asked; `governed: false` when there is no gateway."""
    return await budgets(state.settings, user, await state.agents.list(user))
