"""`agentry login`, `agentry usage`, `agentry budgets` (and, for admins, `agentry budgets set|delete|
throttle|unthrottle|policies|throttles`: `budgets_app`)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from .. import config
from ..client import Api, ApiError, error_of, unreachable
from ..output import Column, Format, console, emit, field, note, table
from ..session import InputError, OutputOption, session_of

USAGE_AGENTS = (
    Column("AGENT", field("agentId")),
    Column("RUNS", field("executions")),
    Column("SUCCEEDED", field("succeeded")),
    Column("FAILED", field("failed")),
    Column("INPUT TOKENS", field("inputTokens")),
    Column("CACHED IN", field("cacheReadTokens")),
    Column("OUTPUT TOKENS", field("outputTokens")),
    Column("COST USD", field("costUSD")),
    Column("SAVED USD", field("savingUSD")),
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
        f"{data.get('outputTokens')} output tokens, ${data.get('costUSD')}; "
        f"{data.get('cacheReadTokens', 0)} input tokens read from the cache saved "
        f"${data.get('savingUSD', '0')}",
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
    if ctx.invoked_subcommand is not None:  # `agentry budgets set ...`: that command answers
        return
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
    for t in session_of(ctx).api().get("/api/budgets/throttles").get("items", []):  # the why
        end = f"until {t['until']}" if t.get("until") else "until lifted"
        note(f"{t['mode']} by an admin on {t['scope']} {t['subject']} ({end}): {t['reason']}")


# -- admins: budget policies and manual throttles (`agentry budgets set|delete|throttle|unthrottle`) ----

budgets_app = typer.Typer(
    help="The budgets you are under; admins: set and delete budget policies, throttle and unthrottle.",
    no_args_is_help=False,
)
budgets_app.callback(invoke_without_command=True)(budgets)

POLICIES = (
    Column("NAME", field("name")),
    Column("SOURCE", field("source")),
    Column("SCOPE", field("scope")),
    Column("MATCH", field("match")),
    Column("LIMITS", lambda p: "; ".join(limit_text(x) for x in p.get("limits") or [])),
)
THROTTLES = (
    Column("ID", field("id")),
    Column("SCOPE", field("scope")),
    Column("SUBJECT", field("subject")),
    Column("MODE", field("mode")),
    Column("UNTIL", lambda t: t.get("until") or "lifted by hand"),
    Column("REASON", field("reason")),
)
_LIMIT = re.compile(r"^(?P<window>[a-z0-9]+):(?P<amounts>[A-Za-z]+=[0-9.]+(,[A-Za-z]+=[0-9.]+)*)$")
_METRICS = {"tokens": "tokens", "messages": "messages", "costusd": "costUSD", "cost": "costUSD"}
_DURATION = re.compile(r"^(\d+)([mhd])$")


def limit_text(limit: dict[str, Any]) -> str:
    amounts = ",".join(f"{k}={limit[k]}" for k in ("tokens", "messages", "costUSD") if limit.get(k))
    return f"{limit.get('window')}:{amounts}"


def parse_limit(text: str) -> dict[str, Any]:
    """`5h:messages=900,tokens=5000000` or `day:costUSD=50` -> a limit of the API (which checks the
    window and the values)."""
    match = _LIMIT.match(text.strip())
    if match is None:
        raise InputError(f"--limit {text!r}: write WINDOW:METRIC=VALUE[,METRIC=VALUE], e.g. 5h:messages=900")
    out: dict[str, Any] = {"window": match["window"]}
    for pair in match["amounts"].split(","):
        name, _, value = pair.partition("=")
        metric = _METRICS.get(name.lower())
        if metric is None:
            raise InputError(f"--limit {text!r}: unknown metric {name!r} (tokens, messages, costUSD)")
        out[metric] = value if metric == "costUSD" else int(float(value))
    return out


def until_of(for_: str | None, until: str | None) -> str | None:
    """`--for 2h` (from now) or `--until <ISO 8601>`; neither: until lifted."""
    if for_ is not None and until is not None:
        raise InputError("give --for or --until, not both")
    if for_ is None:
        return until
    match = _DURATION.match(for_.strip())
    if match is None:
        raise InputError(f"--for {for_!r}: write <n>m, <n>h or <n>d, e.g. 2h")
    seconds = int(match[1]) * {"m": 60, "h": 3600, "d": 86400}[match[2]]
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def _admin_api(ctx: typer.Context, command: str) -> Api:
    session_of(ctx).needs_api(f"budgets {command}")
    return session_of(ctx).api()


@budgets_app.command("policies")
def list_policies(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Every budget policy: the gateway's governance file's (read-only) and those admins set."""
    emit(_admin_api(ctx, "policies").get("/api/budgets/policies"), output, POLICIES, rows_of="policies")


@budgets_app.command("set")
def set_policy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the policy's name (lower-case letters, digits, . _ -)")],
    scope: Annotated[str, typer.Option(help="user, agent, namespace or installation")],
    limit: Annotated[
        list[str], typer.Option("--limit", help="WINDOW:METRIC=VALUE[,...], e.g. 5h:messages=900 (repeat)")
    ],
    match: Annotated[str, typer.Option(help="shell pattern on the subject (e.g. team-a/*)")] = "*",
    output: OutputOption = Format.TABLE,
) -> None:
    """Create a budget policy, or replace the limits of one set before (admin)."""
    api = _admin_api(ctx, "set")
    body = {"scope": scope, "match": match, "limits": [parse_limit(x) for x in limit]}
    try:
        policy = api.post("/api/budgets/policies", {"name": name, **body})
    except ApiError as exc:
        if exc.status != 409:
            raise
        policy = api.put(f"/api/budgets/policies/{name}", body)
    emit(policy, output, POLICIES)


@budgets_app.command("delete")
def delete_policy(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="an admin-set policy")]
) -> None:
    """Delete a budget policy an admin set (the governance file's are read-only)."""
    _admin_api(ctx, "delete").call("DELETE", f"/api/budgets/policies/{name}")
    note(f"budget policy {name} deleted; the gateway drops it within seconds")


@budgets_app.command("throttles")
def list_throttles(ctx: typer.Context, output: OutputOption = Format.TABLE) -> None:
    """Throttles in force: all of them for an admin, those on your own subjects otherwise."""
    emit(_admin_api(ctx, "throttles").get("/api/budgets/throttles"), output, THROTTLES, rows_of="items")


@budgets_app.command("throttle")
def throttle(
    ctx: typer.Context,
    scope: Annotated[str, typer.Argument(help="user, agent, namespace or installation")],
    subject: Annotated[str, typer.Argument(help="a user id, an agent, a namespace; '*' for installation")],
    reason: Annotated[str, typer.Option(help="shown to whoever is throttled")],
    refuse: Annotated[
        bool, typer.Option("--refuse", help="refuse every call instead of the cheaper model")
    ] = False,
    for_: Annotated[str | None, typer.Option("--for", help="how long, e.g. 2h")] = None,
    until: Annotated[str | None, typer.Option(help="until when (ISO 8601 with a zone)")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Force a subject into the throttle zone (or refuse it) until a time or until lifted (admin)."""
    body = {"scope": scope, "subject": subject, "reason": reason, "mode": "refuse" if refuse else "throttle"}
    made = _admin_api(ctx, "throttle").post(
        "/api/budgets/throttles", {**body, "until": until_of(for_, until)}
    )
    emit(made, output, THROTTLES)


@budgets_app.command("unthrottle")
def unthrottle(
    ctx: typer.Context, throttle_id: Annotated[str, typer.Argument(help="the throttle's id")]
) -> None:
    """Lift a manual throttle (admin)."""
    _admin_api(ctx, "unthrottle").call("DELETE", f"/api/budgets/throttles/{throttle_id}")
    note(f"throttle {throttle_id} lifted; the gateway lets go within seconds")
