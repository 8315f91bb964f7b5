"""`agentry notifications list|create|delete|test|deliveries|redeliver` (docs/events.md, "Events out")."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from agentry_common.notifications import EventKind, SinkKind

from ..client import Api
from ..output import Column, Format, emit, field, note
from ..session import OutputOption, segment, session_of

app = typer.Typer(
    help="Notifications: send run ends, approvals, budget zones and paused schedules to webhooks and Slack.",
    no_args_is_help=True,
)
BASE = "/api/notifications"

SUBSCRIPTIONS = (
    Column("ID", field("id")),
    Column("NAME", field("name")),
    Column("SINK", field("sink")),
    Column("URL", field("urlHint")),
    Column("SCOPE", lambda s: " ".join(x for x in (s["scope"]["kind"], s["scope"].get("name")) if x)),
    Column("EVENTS", lambda s: ",".join(s["events"]) or "all"),
    Column("ENABLED", field("enabled")),
)
DELIVERIES = (
    Column("ID", field("id")),
    Column("KIND", field("kind")),
    Column("SUBSCRIPTION", field("subscriptionName")),
    Column("STATE", field("state")),
    Column("ATTEMPTS", field("attempts")),
    Column("LAST ERROR", field("lastError")),
    Column("CREATED", field("createdAt")),
)


class Scope(StrEnum):
    USER = "user"
    AGENT = "agent"
    WORKFLOW = "workflow"
    EVERYONE = "everyone"


class State(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    ALL = "all"


def _api(ctx: typer.Context, command: str) -> Api:
    session_of(ctx).needs_api(f"notifications {command}")
    return session_of(ctx).api()


@app.command("list")
def list_subscriptions(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Your subscriptions."""
    emit(_api(ctx, "list").get(f"{BASE}/subscriptions"), output, SUBSCRIPTIONS, rows_of="items")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a name for it")],
    url: Annotated[str, typer.Option("--url", help="where to POST (kept encrypted)")],
    sink: Annotated[SinkKind, typer.Option(help="webhook: signed JSON; slack: an incoming webhook")] = (
        SinkKind.WEBHOOK
    ),
    event: Annotated[
        list[EventKind] | None, typer.Option("--event", "-e", help="an event kind (repeat; none: all)")
    ] = None,
    scope: Annotated[Scope, typer.Option(help="whose events: yours, one agent's or workflow's")] = Scope.USER,
    target: Annotated[str | None, typer.Option("--name", help="the agent or workflow of the scope")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Subscribe a sink. A webhook's signing secret is printed this once: keep it."""
    body = {
        "name": name,
        "sink": sink.value,
        "url": url,
        "events": [e.value for e in event or []],
        "scope": {"kind": scope.value, "name": target},
    }
    emit(_api(ctx, "create").post(f"{BASE}/subscriptions", body), output)


@app.command("delete")
def delete(ctx: typer.Context, subscription: Annotated[str, typer.Argument(help="subscription id")]) -> None:
    """Delete a subscription (its pending deliveries are dead-lettered)."""
    _api(ctx, "delete").call("DELETE", f"{BASE}/subscriptions/{segment(subscription)}")
    note(f"subscription {subscription} deleted")


@app.command("test")
def test(
    ctx: typer.Context,
    subscription: Annotated[str, typer.Argument(help="subscription id")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Send a test notification now and show how the sink answered (exit 1 if it was not delivered)."""
    answer = _api(ctx, "test").post(f"{BASE}/subscriptions/{segment(subscription)}/test")
    emit(answer, output)
    if not answer.get("delivered"):
        raise typer.Exit(1)


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    state: Annotated[State, typer.Option(help="which ones (dead: the dead-letter list)")] = State.ALL,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    output: OutputOption = Format.TABLE,
) -> None:
    """Deliveries of your subscriptions, newest first."""
    params = {"state": None if state is State.ALL else state.value, "limit": limit}
    emit(_api(ctx, "deliveries").get(f"{BASE}/deliveries", params), output, DELIVERIES, rows_of="items")


@app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    delivery: Annotated[str, typer.Argument(help="delivery id (agentry notifications deliveries)")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Send a delivery again, with the same id (a dead one gets a fresh retry schedule)."""
    emit(_api(ctx, "redeliver").post(f"{BASE}/deliveries/{segment(delivery)}/redeliver"), output)
