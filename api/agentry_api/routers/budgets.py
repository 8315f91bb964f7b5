"""/api/budgets: the budgets the caller's runs and chat turns are under, and what they decided; for
admins, the budget policies and manual throttles the LLM gateway applies on top of its governance
file (services/budgets/admin.py; the gateway reads them within AGENTRY_GATEWAY_ADMIN_REFRESH_SECONDS)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status

from agentry_common.governance import POLICY_NAME_PATTERN

from ..auth import User
from ..deps import CurrentUser, StateDep
from ..schemas import BudgetDecisionsOut
from ..schemas.budgets import (
    AuditEntryOut,
    AuditOut,
    PoliciesOut,
    PolicyIn,
    PolicyOut,
    PolicyUpdateIn,
    ThrottleIn,
    ThrottleOut,
    ThrottlesOut,
)
from ..services.budgets import admin
from ..services.budgets.admin_store import BudgetAdminStore
from ..services.budgets.decisions import DEFAULT_LIMIT, decisions
from ..services.budgets.view import BudgetsOut, budgets
from ..services.errors import Conflict
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


# -- admin: policies and manual throttles --------------------------------------------------------------


async def require_admin(user: CurrentUser) -> User:
    if user.kind != "admin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only an administrator may manage budgets and throttles (you are signed in as {user.kind})",
        )
    return user


AdminUser = Annotated[User, Depends(require_admin)]
PolicyName = Annotated[str, Path(pattern=POLICY_NAME_PATTERN)]


async def store_of(state: StateDep) -> BudgetAdminStore:
    return BudgetAdminStore(state.store.db)


StoreDep = Annotated[BudgetAdminStore, Depends(store_of)]


@router.get("/policies", response_model=PoliciesOut)
async def list_policies(user: AdminUser, store: StoreDep) -> PoliciesOut:
    """The governance file's policies (`source: config`, read-only: as a gateway pod last published
    them) and those set here (`source: admin`), which the gateway adds to them."""
    config = await store.config()
    out = [admin.policy_out(p, "config") for p in config.get("policies") or []]
    out += [admin.policy_out(p, "admin") for p in sorted(await store.policies(), key=lambda d: d["name"])]
    return PoliciesOut(policies=out, configPublishedAt=config.get("publishedAt"))


async def _config_names(store: BudgetAdminStore) -> set[str]:
    return {str(p.get("name")) for p in (await store.config()).get("policies") or []}


@router.post("/policies", response_model=PolicyOut, status_code=status.HTTP_201_CREATED)
async def create_policy(body: PolicyIn, user: AdminUser, store: StoreDep) -> PolicyOut:
    doc = admin.new_policy_doc(body, user.id, await _config_names(store))
    await store.create_policy(doc, admin.audit_entry(user, "policy.create", f"policy/{body.name}", after=doc))
    return admin.policy_out(doc, "admin")


@router.put("/policies/{name}", response_model=PolicyOut)
async def update_policy(
    name: PolicyName, body: PolicyUpdateIn, user: AdminUser, store: StoreDep
) -> PolicyOut:
    if name in await _config_names(store):
        raise Conflict(f"policy {name!r} is defined in the gateway's governance file (read-only here)")
    doc = admin.policy_doc(name, body, user.id)
    await store.change_policy(name, doc, admin.audit_entry(user, "policy.update", f"policy/{name}"))
    return admin.policy_out(doc, "admin")


@router.delete("/policies/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_policy(name: PolicyName, user: AdminUser, store: StoreDep) -> Response:
    if name in await _config_names(store):
        raise Conflict(f"policy {name!r} is defined in the gateway's governance file (read-only here)")
    await store.change_policy(name, None, admin.audit_entry(user, "policy.delete", f"policy/{name}"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/throttles", response_model=ThrottlesOut)
async def list_throttles(user: CurrentUser, state: StateDep, store: StoreDep) -> ThrottlesOut:
    """Admins: every throttle in force. Anyone else: those on their own subjects (their user, their
    agents, their namespace, the installation), with the admin's reason — why their calls are steered."""
    now = time.time()
    docs = [d for d in await store.throttles() if admin.in_force(d, now)]
    if user.kind != "admin":
        mine = admin.user_subjects(user, await state.agents.list(user), state.settings.namespace)
        docs = [d for d in docs if admin.applies_to(d, mine)]
    return ThrottlesOut(
        items=[admin.throttle_out(d) for d in sorted(docs, key=lambda d: str(d["createdAt"]))]
    )


@router.post("/throttles", response_model=ThrottleOut, status_code=status.HTTP_201_CREATED)
async def create_throttle(body: ThrottleIn, user: AdminUser, state: StateDep, store: StoreDep) -> ThrottleOut:
    """Force a user, an agent, a namespace or everyone (`installation`) into the throttle zone (cheaper
    model; low-priority runs wait) or to refusal, until `until` or until lifted."""
    named = body.scope == "user" and admin.could_be_user_id(body.subject)
    is_user = named and await state.store.get_user(body.subject) is not None
    subject, user_id = admin.throttle_subject(body.scope, body.subject, state.settings.namespace, is_user)
    doc = admin.throttle_doc(body, subject, user_id, user.id, time.time())
    await store.create_throttle(
        doc, admin.audit_entry(user, "throttle.create", f"throttle/{doc['id']}", after=doc)
    )
    return admin.throttle_out(doc)


@router.delete("/throttles/{throttle_id}", response_model=ThrottleOut)
async def lift_throttle(
    throttle_id: Annotated[str, Path(pattern=r"^t-[0-9a-f]{1,32}$")], user: AdminUser, store: StoreDep
) -> ThrottleOut:
    """Lift a throttle (kept, marked lifted, for the record): the gateway lets go within seconds."""
    entry = admin.audit_entry(user, "throttle.lift", f"throttle/{throttle_id}")
    return admin.throttle_out(await store.lift(throttle_id, user.id, entry))


@router.get("/audit", response_model=AuditOut)
async def audit(user: AdminUser, store: StoreDep) -> AuditOut:
    """Who changed which budget policy or throttle, when, the document before and after; newest first."""
    return AuditOut(items=[AuditEntryOut.model_validate(d) for d in await store.audit()])
