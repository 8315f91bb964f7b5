"""`agentry login`, `agentry usage`, `agentry budgets`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from .. import config
from ..client import Api, error_of, unreachable
from ..output import Column, Format, console, emit, field, note, table
from ..session import OutputOption, session_of

USAGE_AGENTS = (
    Column("AGENT", field("agentId")),
    Column("RUNS", field("executions")),
    Column("SUCCEEDED", field("succeeded")),
    Column("FAILED", field("failed")),
    Column("INPUT TOKENS", field("inputTokens")),
    Column("OUTPUT TOKENS", field("outputTokens")),
    Column("COST USD", field("costUSD")),
)

BUDGETS = (
    Column("POLICY", field("policy")),
    Column("SCOPE", field("scope")),
    Column("SUBJECT", field("subject")),
    Column("WINDOW", field("window")),
    Column("METRIC", field("metric")),
    Column("USED", field("used")),
    Column("RESERVED", field("reserved")),
    Column("LIMIT", field("limit")),
    Column("REMAINING", field("remaining")),
    Column("USE %", field("percent")),
    Column("ZONE", field("zone")),
)


DECISIONS = (
    Column("TIME", field("time")),
    Column("RUN", field("execution")),
    Column("AGENT", field("agent")),
    Column("ZONE", field("zone")),
    Column("DECISION", field("decision")),
    Column("REQUESTED", field("requestedModel")),
    Column("MODEL", field("model")),
    Column("WHY", field("decisionReason")),
)


class Window(StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"


def guest_token(url: str) -> str:
    """A new guest user's API token (servers with guest sessions on, like `make dev`)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        try:
            started = http.post("/api/session/guest")
            if started.status_code >= 400:
                raise error_of(started)
            made = http.post("/api/tokens", json={"name": "agentry-cli"})
        except httpx.HTTPError as exc:
            raise unreachable(url, exc) from None
        if made.status_code >= 400:
            raise error_of(made)
        return str(made.json()["token"])


def login(
    url: Annotated[str, typer.Option("--url", help="the API, e.g. http://127.0.0.1:8000")],
    token: Annotated[
        str | None, typer.Option("--token", help="an API token ('-': read standard input); asked if absent")
    ] = None,
    guest: Annotated[
        bool, typer.Option("--guest", help="make a new guest user and a token for it (development servers)")
    ] = False,
    config_file: Annotated[Path | None, typer.Option("--config", help="file to write")] = None,
) -> None:
    """Check the token against the API, then save URL and token in the config file (mode 0600)."""
    url = config.check_url(url)
    if guest:
        token = guest_token(url)
    elif token == "-":
        token = sys.stdin.readline().strip()
    elif token is None:
        token = str(typer.prompt("API token", hide_input=True))
    api = Api(config.Target(url, token))
    try:
        me: dict[str, Any] = api.get("/api/me")
    finally:
        api.close()
    path = config_file or config.config_path()
    config.write(path, url, token)
    note(f"signed in to {url} as {me.get('id')} ({me.get('kind')}); saved in {path}")


def usage(
    ctx: typer.Context,
    window: Annotated[Window, typer.Option(help="how far back")] = Window.WEEK,
    output: OutputOption = Format.TABLE,
) -> None:
    """Runs, tokens and cost over a window, per agent."""
    session_of(ctx).needs_api("usage")
    data = session_of(ctx).api().get("/api/usage", {"window": window.value})
    if output is not Format.TABLE:
        emit(data, output)
        return
    out = console()
    out.print(
        f"since {data.get('since')}: {data.get('executions')} runs, {data.get('inputTokens')} input and "
        f"{data.get('outputTokens')} output tokens, ${data.get('costUSD')}",
        markup=False,
    )
    if data.get("agents"):
        out.print(table(data["agents"], USAGE_AGENTS))


def budgets(
    ctx: typer.Context,
    output: OutputOption = Format.TABLE,
    decisions: Annotated[
        bool,
        typer.Option("--decisions", help="your calls the budget throttled, made wait or refused, and why"),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=100, help="with --decisions: how many, newest first")] = 20,
) -> None:
    """The budgets you are under: use, limit, what remains, zone (from the LLM gateway)."""
    session_of(ctx).needs_api("budgets")
    if decisions:
        steered = session_of(ctx).api().get("/api/budgets/decisions", {"limit": limit})
        emit(steered, output, DECISIONS, rows_of="items")
        return
    data = session_of(ctx).api().get("/api/budgets")
    if output is not Format.TABLE:
        emit(data, output)
        return
    if data.get("note"):
        note(str(data["note"]))
    emit(data, output, BUDGETS, rows_of="limits")
