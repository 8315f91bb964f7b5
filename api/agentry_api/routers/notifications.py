"""/api/notifications: the caller's subscriptions (sinks for events), test deliveries, the outbox's
deliveries and the dead-letter list, and redelivery (docs/events.md, "Events out")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from ..deps import CurrentUser, StateDep
from ..schemas.notifications import (
    DeliveryList,
    DeliveryOut,
    ScopeOut,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
    TestOut,
)
from ..services.notifications import Subscriptions

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


async def subscriptions_of(state: StateDep) -> Subscriptions:
    if state.notifications is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "notifications are not running")
    return state.notifications.subscriptions


Subs = Annotated[Subscriptions, Depends(subscriptions_of)]


def subscription_out(doc: dict[str, Any]) -> SubscriptionOut:
    return SubscriptionOut(
        id=doc["id"],
        name=doc["name"],
        sink=doc["sinkKind"],
        urlHint=doc.get("urlHint") or "",
        events=list(doc.get("events") or []),
        scope=ScopeOut(**(doc.get("scope") or {"kind": "user"})),
        enabled=bool(doc.get("enabled", True)),
        createdAt=doc["createdAt"],
        updatedAt=doc["updatedAt"],
        secret=doc.get("secret"),
    )


def delivery_out(doc: dict[str, Any]) -> DeliveryOut:
    fields = {k: doc.get(k) for k in DeliveryOut.model_fields if k != "link"}
    return DeliveryOut(**fields, link=(doc.get("notification") or {}).get("link"))


@router.get("/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(user: CurrentUser, subs: Subs) -> SubscriptionList:
    return SubscriptionList(items=[subscription_out(d) for d in await subs.owned(user)])


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=status.HTTP_201_CREATED)
async def create_subscription(body: SubscriptionIn, user: CurrentUser, subs: Subs) -> SubscriptionOut:
    """A webhook's answer carries its signing secret, this once."""
    return subscription_out(await subs.create(user, body))


@router.get("/subscriptions/{sub_id}", response_model=SubscriptionOut)
async def get_subscription(sub_id: str, user: CurrentUser, subs: Subs) -> SubscriptionOut:
    return subscription_out(await subs.get(user, sub_id))


@router.patch("/subscriptions/{sub_id}", response_model=SubscriptionOut)
async def update_subscription(
    sub_id: str, body: SubscriptionPatch, user: CurrentUser, subs: Subs
) -> SubscriptionOut:
    return subscription_out(await subs.update(user, sub_id, body))


@router.delete("/subscriptions/{sub_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_subscription(sub_id: str, user: CurrentUser, subs: Subs) -> Response:
    await subs.delete(user, sub_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/subscriptions/{sub_id}/test", response_model=TestOut)
async def test_subscription(sub_id: str, user: CurrentUser, subs: Subs) -> TestOut:
    """Send a test notification now (no retries) and say how the sink answered."""
    attempt = await subs.test(user, sub_id)
    return TestOut(delivered=attempt.ok, status=attempt.status, error=attempt.error)


@router.get("/deliveries", response_model=DeliveryList)
async def list_deliveries(
    user: CurrentUser,
    subs: Subs,
    state_filter: Annotated[Literal["pending", "delivered", "dead"] | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryList:
    """Newest first; `state=dead` is the dead-letter list."""
    return DeliveryList(items=[delivery_out(d) for d in await subs.deliveries(user, state_filter, limit)])


@router.post(
    "/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=status.HTTP_202_ACCEPTED
)
async def redeliver(delivery_id: str, user: CurrentUser, subs: Subs) -> DeliveryOut:
    """Send again (a dead delivery gets a fresh retry schedule), with the same id."""
    return delivery_out(await subs.redeliver(user, delivery_id))
