"""`agentry runs submit|list|get|cancel`."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from ..client import Api
from ..exits import ExitCode, for_phase
from ..output import Column, Format, emit, field, note
from ..session import OutputOption, Session, resolve_agent, segment, session_of
from ..stream import Follower
from ..watch import View, approval_line, event_line, start, until_stopped

app = typer.Typer(help="Runs (Executions): start one, list, show, cancel.", no_args_is_help=True)

COLUMNS = (
    Column("NAME", field("id")),
    Column("AGENT", field("agentId")),
    Column("PHASE", field("phase")),
    Column("REASON", field("reason")),
    Column("TOKENS", lambda r: _tokens(r.get("usage"))),
    Column("COST", field("usage", "costUSD")),
    Column("DURATION", field("duration")),
    Column("CREATED", field("createdAt")),
)

DEFAULT_TIMEOUT = 1800.0


def _tokens(usage: Any) -> int | None:
    if not isinstance(usage, dict):
        return None
    return int(usage.get("inputTokens") or 0) + int(usage.get("outputTokens") or 0)


def read_input(value: str | None) -> str | None:
    return sys.stdin.read() if value == "-" else value


@dataclass
class Submission:
    """A run submitted with --wait: its name once accepted, its last view once stopped."""

    name: str | None = None
    view: View | None = None


async def submit_and_wait(session: Session, agent_id: str, text: str | None, sub: Submission) -> None:
    """Subscribe first, then submit: every report about the new run is after the stream's start."""
    async with aclosing(await start(Follower(session.target(), notice=note))) as events:
        body = {"input": text} if text else None
        accepted = session.api().post(f"/api/agents/{segment(agent_id)}/runs", body)
        sub.name = name = str(accepted["execution"])
        note(f"run {name} accepted (correlation {accepted.get('correlationId')})")
        sub.view = await until_stopped(
            events,
            name,
            stop_at_approval=True,
            on_view=lambda v: note(event_line(v)),
            on_approval=lambda a: note(approval_line(a)),
        )


def latest(stored: View, reported: View | None) -> View:
    """The run's view: the stored one, updated by the report that ended the wait (the API publishes a
    change before it stores it, so a read right after the report can still show the phase before)."""
    if reported is None or reported.get("phase") == stored.get("phase"):
        return stored
    return {**stored, **{k: v for k, v in reported.items() if k in stored}}


def finish(api: Api, name: str, reported: View | None, output: Format) -> None:
    """Print the run as it ended (the full view, with its result) and exit by its phase."""
    final = latest(api.get(f"/api/executions/{segment(name)}", patient=True), reported)
    emit(final, output)
    code = for_phase(final.get("phase") or "")
    if code is ExitCode.WAITING_APPROVAL:
        approval = (final.get("approval") or {}).get("id")
        note(f"run {name} waits for approval {approval}: agentry approve {approval} (or deny)")
    raise typer.Exit(int(code))


def submit_to_cluster(
    session: Session, agent: str, text: str | None, wait: bool, timeout: float, output: Format
) -> None:
    """`runs submit` in cluster mode: an Execution CR; --wait polls its status."""
    cluster = session.cluster()
    created = cluster.submit(agent, text)
    name = str(created["metadata"]["name"])
    if not wait:
        emit(created, output)
        return
    note(f"run {name} created (correlation {created['spec'].get('correlationId')})")
    final = cluster.wait(name, time.monotonic() + timeout, lambda phase: note(f"phase={phase}"))
    if final is None:
        note(f"run {name} is not over after {timeout:g} s")
        raise typer.Exit(int(ExitCode.TIMEOUT))
    emit(final, output)
    raise typer.Exit(int(for_phase((final.get("status") or {}).get("phase") or "")))


@app.command("submit")
def submit(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="agent id or name")],
    input_text: Annotated[
        str | None, typer.Option("--input", "-i", help="the run's task text ('-': read standard input)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="wait until the run ends, exit by its phase")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = DEFAULT_TIMEOUT,
    output: OutputOption = Format.TABLE,
) -> None:
    """Start a run; with --wait, follow it and exit by how it ended.

    Exit codes with --wait: 0 Succeeded, 1 Failed/Cancelled/Skipped, 3 waiting for approval, 4 not
    over within --timeout (the run goes on); docs/cli.md lists every code."""
    session = session_of(ctx)
    text = read_input(input_text)
    if session.cluster_mode:
        submit_to_cluster(session, agent, text, wait, timeout, output)
        return
    api = session.api()
    agent_id = resolve_agent(api, agent)
    if not wait:
        emit(api.post(f"/api/agents/{segment(agent_id)}/runs", {"input": text} if text else None), output)
        return
    sub = Submission()
    try:
        asyncio.run(asyncio.wait_for(submit_and_wait(session, agent_id, text, sub), timeout))
    except TimeoutError:
        what = f"run {sub.name} is not over" if sub.name else "the run was not accepted"
        note(f"{what} after {timeout:g} s")
        raise typer.Exit(int(ExitCode.TIMEOUT)) from None
    assert sub.name is not None
    finish(api, sub.name, sub.view, output)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", "-a", help="only runs of this agent (id or name)")
    ] = None,
    phase: Annotated[str | None, typer.Option(help="only runs in this phase")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many, newest first")] = 20,
    output: OutputOption = Format.TABLE,
) -> None:
    """Your runs, newest first."""
    session = session_of(ctx)
    if session.cluster_mode:
        from ..cluster import run_row

        crs = session.cluster().runs(agent)[:limit]
        rows = crs if output is not Format.TABLE else [run_row(x) for x in crs]
        emit({"items": rows}, output, COLUMNS, rows_of="items")
        return
    api = session.api()
    agent_id = resolve_agent(api, agent) if agent else None
    params = {"agent": agent_id, "phase": phase, "limit": min(limit, 100)}
    emit({"items": api.pages("/api/executions", params, limit)}, output, COLUMNS, rows_of="items")


@app.command("get")
def get_run(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="run (Execution) name")],
    output: OutputOption = Format.TABLE,
) -> None:
    """One run: phase, reason, times, result, usage, approval."""
    session = session_of(ctx)
    if session.cluster_mode:
        emit(session.cluster().run(run), output)
        return
    emit(session.api().get(f"/api/executions/{segment(run)}"), output)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="run (Execution) name")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Ask the operator to stop a run (202; the run ends Cancelled)."""
    session_of(ctx).needs_api("runs cancel")
    emit(session_of(ctx).api().post(f"/api/executions/{segment(run)}/cancel"), output)
