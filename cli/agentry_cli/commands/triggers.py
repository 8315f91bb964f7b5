"""`agentry triggers list|create|show|delete|deliveries|rotate-secret|test`: URLs that start runs."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from agentry_common.triggers import Scheme, sign_generic, sign_github

from ..client import error_of, unreachable
from ..output import Column, Format, emit, field, note
from ..session import InputError, OutputOption, segment, session_of

app = typer.Typer(
    help="Triggers: signed HTTP deliveries that start an Agent's or a Workflow's runs.", no_args_is_help=True
)

COLUMNS = (
    Column("NAME", field("name")),
    Column("AGENT", field("agent")),
    Column("WORKFLOW", field("workflow")),
    Column("SCHEME", field("scheme")),
    Column("READY", field("ready")),
    Column("REASON", field("reason")),
    Column("LAST", field("lastDelivery", "outcome")),
    Column("URL", field("url")),
)
DELIVERY_COLUMNS = (
    Column("RECEIVED", field("receivedAt")),
    Column("OUTCOME", field("outcome")),
    Column("REASON", field("reason")),
    Column("STATUS", field("status")),
    Column("DELIVERY", field("deliveryId")),
    Column("EVENT", field("event")),
    Column("RUN", field("run")),
)
NameArg = Annotated[str, typer.Argument(help="trigger name (agentry triggers list)")]


def parameters_of(values: list[str]) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, template = value.partition("=")
        if not sep or not name:
            raise InputError(f"--param {value!r}: use NAME=TEMPLATE")
        found[name] = template
    return found


@app.command("list")
def list_triggers(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Your triggers, with their URL and readiness."""
    session_of(ctx).needs_api("triggers list")
    emit(session_of(ctx).api().get("/api/triggers"), output, COLUMNS, rows_of="items")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a DNS label: the last part of the URL")],
    agent: Annotated[str | None, typer.Option(help="the Agent it runs (its id)")] = None,
    workflow: Annotated[str | None, typer.Option(help="or the Workflow it runs")] = None,
    scheme: Annotated[
        Scheme, typer.Option(help="GitHub (X-Hub-Signature-256) or Generic (Standard Webhooks)")
    ] = (Scheme.GITHUB),
    input_template: Annotated[
        str | None, typer.Option("--input", help="the run's input, e.g. 'Review {{ $.pull_request.title }}'")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="a Workflow parameter: NAME=TEMPLATE (repeatable)")
    ] = None,
    per_minute: Annotated[int | None, typer.Option(help="deliveries per minute (per API replica)")] = None,
    burst: Annotated[int | None, typer.Option(help="deliveries at once above the rate")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a trigger; its HMAC key is printed once: give it to the sender."""
    session_of(ctx).needs_api("triggers create")
    body: dict[str, Any] = {"name": name, "agent": agent, "workflow": workflow, "scheme": scheme.value}
    if input_template is not None or param:
        body["mapping"] = {"input": input_template, "parameters": parameters_of(param or [])}
    if per_minute is not None or burst is not None:
        body["rate"] = {k: v for k, v in (("perMinute", per_minute), ("burst", burst)) if v is not None}
    created = session_of(ctx).api().post("/api/triggers", {k: v for k, v in body.items() if v is not None})
    emit(created, output)
    if output is Format.TABLE:
        note(
            "the secret is shown once: give it to the sender now "
            "(agentry triggers rotate-secret makes a new one)"
        )


@app.command("show")
def show(ctx: typer.Context, name: NameArg, output: OutputOption = Format.TABLE) -> None:
    """One trigger: its URL, scheme, mapping, readiness and last delivery."""
    session_of(ctx).needs_api("triggers show")
    emit(session_of(ctx).api().get(f"/api/triggers/{segment(name)}"), output)


@app.command("delete")
def delete(ctx: typer.Context, name: NameArg) -> None:
    """Delete a trigger (and the Secret of its key); its URL answers 404."""
    session_of(ctx).needs_api("triggers delete")
    session_of(ctx).api().call("DELETE", f"/api/triggers/{segment(name)}")
    print(f"deleted {name}", file=sys.stderr)


@app.command("rotate-secret")
def rotate_secret(ctx: typer.Context, name: NameArg, output: OutputOption = Format.TABLE) -> None:
    """A new HMAC key, printed once; the old one stops working."""
    session_of(ctx).needs_api("triggers rotate-secret")
    emit(session_of(ctx).api().post(f"/api/triggers/{segment(name)}/rotate-secret"), output)


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    output: OutputOption = Format.TABLE,
) -> None:
    """Recent deliveries, newest first: accepted, duplicate or refused (and why), and the run each started."""
    session_of(ctx).needs_api("triggers deliveries")
    found = session_of(ctx).api().get(f"/api/triggers/{segment(name)}/deliveries", {"limit": limit})
    emit(found, output, DELIVERY_COLUMNS, rows_of="items")


def payload_of(data: str | None, file: Path | None) -> bytes:
    if data is not None and file is not None:
        raise InputError("give --data or --file, not both")
    raw = file.read_bytes() if file is not None else (data or "").encode()
    if not raw:
        raw = json.dumps({"agentry": "test delivery", "sentAt": int(time.time())}).encode()
    try:
        json.loads(raw)
    except ValueError:
        raise InputError("the payload is not JSON") from None
    return raw


@app.command("test")
def test(
    ctx: typer.Context,
    name: NameArg,
    secret: Annotated[
        str,
        typer.Option(envvar="AGENTRY_TRIGGER_SECRET", help="the trigger's key (shown at create or rotate)"),
    ],
    data: Annotated[str | None, typer.Option(help="the JSON payload to send")] = None,
    file: Annotated[Path | None, typer.Option(help="or a file holding it")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Send a correctly signed delivery to the trigger's URL: the answer names the run it started."""
    session_of(ctx).needs_api("triggers test")
    trigger = session_of(ctx).api().get(f"/api/triggers/{segment(name)}")
    body = payload_of(data, file)
    delivery = f"agentry-test-{uuid.uuid4().hex}"
    headers = {"content-type": "application/json", "user-agent": "agentry-cli triggers test"}
    if trigger["scheme"] == Scheme.GITHUB.value:
        headers |= {
            "x-github-delivery": delivery,
            "x-github-event": "agentry-test",
            **sign_github(secret.encode(), body),
        }
    else:
        headers |= sign_generic(secret.encode(), delivery, int(time.time()), body)
    try:
        answer = httpx.post(trigger["url"], content=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise unreachable(trigger["url"], exc) from None
    if answer.status_code >= 400:
        raise error_of(answer)
    emit({"delivery": delivery, **answer.json()}, output)
