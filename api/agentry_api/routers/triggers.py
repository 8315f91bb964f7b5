"""/api/triggers: an owner's triggers (CRUD, the key rotated and shown once, the deliveries)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..deps import CurrentUser, StateDep
from ..schemas.triggers import DeliveryList, TriggerCreated, TriggerIn, TriggerList, TriggerOut, TriggerPatch
from ..services.hooks import HookReceiver
from ..services.triggers import TriggerService

router = APIRouter(prefix="/api/triggers", tags=["triggers"])


async def service(state: StateDep) -> TriggerService:
    assert state.triggers is not None  # built by the lifespan
    return state.triggers


async def receiver(state: StateDep) -> HookReceiver:
    assert state.hooks is not None
    return state.hooks


Service = Annotated[TriggerService, Depends(service)]
Receiver = Annotated[HookReceiver, Depends(receiver)]


def base_of(request: Request) -> str:
    return str(request.base_url)


@router.get("", response_model=TriggerList)
async def list_triggers(user: CurrentUser, triggers: Service, request: Request) -> TriggerList:
    base = base_of(request)
    return TriggerList(items=[triggers.out(cr, base) for cr in await triggers.owned(user)])


@router.post("", response_model=TriggerCreated, status_code=status.HTTP_201_CREATED)
async def create_trigger(
    body: TriggerIn, user: CurrentUser, triggers: Service, request: Request
) -> TriggerCreated:
    """Creates the trigger and a Secret with a random HMAC key, which this answer shows once."""
    return await triggers.create(user, body, base_of(request))


@router.get("/{name}", response_model=TriggerOut)
async def get_trigger(name: str, user: CurrentUser, triggers: Service, request: Request) -> TriggerOut:
    cr = await triggers.reconcile(await triggers.get(user, name))
    return TriggerOut.model_validate(triggers.out(cr, base_of(request)).model_dump(exclude={"secret"}))


@router.patch("/{name}", response_model=TriggerOut)
async def patch_trigger(
    name: str, body: TriggerPatch, user: CurrentUser, triggers: Service, hooks: Receiver, request: Request
) -> TriggerOut:
    out = await triggers.update(user, name, body, base_of(request))
    hooks.forget(name)
    return TriggerOut.model_validate(out.model_dump(exclude={"secret"}))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_trigger(name: str, user: CurrentUser, triggers: Service, hooks: Receiver) -> Response:
    await triggers.delete(user, name)
    hooks.forget(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/rotate-secret", response_model=TriggerCreated)
async def rotate_secret(
    name: str, user: CurrentUser, triggers: Service, hooks: Receiver, request: Request
) -> TriggerCreated:
    """A new HMAC key, shown once; the old one stops working (other API replicas within seconds)."""
    out = await triggers.rotate(user, name, base_of(request))
    hooks.forget(name)
    return out


@router.get("/{name}/deliveries", response_model=DeliveryList)
async def deliveries(
    name: str, user: CurrentUser, triggers: Service, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> DeliveryList:
    """Newest first: accepted, duplicate and refused deliveries, with the run each started."""
    return DeliveryList(items=await triggers.deliveries(user, name, limit))
