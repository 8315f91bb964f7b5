"""`agentry runs submit|reply|interrupt|list|get|cancel`."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..client import Api
from ..exits import ExitCode, for_phase
from ..output import Column, Format, emit, field, note
from ..session import InputError, OutputOption, Session, resolve_agent, segment, session_of
from ..stream import Follower
from ..watch import View, approval_line, event_line, start, until_stopped

if TYPE_CHECKING:  # lightkube loads only in cluster mode
    from ..cluster import Cluster

app = typer.Typer(
    help="Runs (Executions): start one, continue a finished one, list, show, cancel.", no_args_is_help=True
)

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

THREAD_COLUMNS = (
    Column("THREAD", field("relation")),
    Column("NAME", field("name")),
    Column("PHASE", field("phase")),
    Column("TOKENS", field("tokens")),
    Column("COST", field("costUSD")),
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


async def start_and_wait(session: Session, start_run: Callable[[], str], sub: Submission) -> None:
    """Subscribe first, then start the run (`start_run` returns its name): every report about the new
    run is after the stream's start."""
    async with aclosing(await start(Follower(session.target(), notice=note))) as events:
        sub.name = name = start_run()
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
    if not wait:
        emit(created, output)
        return
    follow_in_cluster(cluster, created, timeout, output)


def follow_in_cluster(cluster: Cluster, created: View, timeout: float, output: Format) -> None:
    """Poll the Execution until it stops (at most `timeout` s); print it and exit by its phase."""
    name = str(created["metadata"]["name"])
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

    def submit_run() -> str:
        accepted = api.post(f"/api/agents/{segment(agent_id)}/runs", {"input": text} if text else None)
        note(f"run {accepted['execution']} accepted (correlation {accepted.get('correlationId')})")
        return str(accepted["execution"])

    follow(session, submit_run, timeout, output)


def follow(session: Session, start_run: Callable[[], str], timeout: float, output: Format) -> None:
    """Start a run and follow it until it stops (at most `timeout` s); print it and exit by its phase."""
    sub = Submission()
    try:
        asyncio.run(asyncio.wait_for(start_and_wait(session, start_run, sub), timeout))
    except TimeoutError:
        what = f"run {sub.name} is not over" if sub.name else "the run was not accepted"
        note(f"{what} after {timeout:g} s")
        raise typer.Exit(int(ExitCode.TIMEOUT)) from None
    assert sub.name is not None
    finish(session.api(), sub.name, sub.view, output)


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
    """One run: phase, reason, times, result, usage, approval; its parent and continuations."""
    session = session_of(ctx)
    if session.cluster_mode:
        cluster = session.cluster()
        found = cluster.run(run)
        emit(found, output)
        if output is Format.TABLE:
            show_thread(cluster.thread(run))
        return
    view = session.api().get(f"/api/executions/{segment(run)}")
    if output is not Format.TABLE:
        emit(view, output)
        return
    emit({k: v for k, v in view.items() if k != "thread"}, output)
    show_thread(view.get("thread") or [])


def show_thread(thread: list[View]) -> None:
    """The runs a run continues and those that continue it, with each one's cost (none: nothing)."""
    if len(thread) < 2:
        return
    print()
    emit(thread, Format.TABLE, THREAD_COLUMNS)


@app.command("reply")
def reply(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="the run (Execution) to steer or continue")],
    message: Annotated[str, typer.Argument(help="the next message ('-': read standard input)")],
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="wait until the run (or the new run) ends, exit by its phase")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = DEFAULT_TIMEOUT,
    output: OutputOption = Format.TABLE,
) -> None:
    """A message for a run. A live run is steered: the message is queued and delivered at its next
    turn boundary (prints "queued; delivered at the next turn"). A finished run is continued: a
    follow-up run of the same agent that starts from the whole conversation (prints the new run's
    name). -o json|yaml prints the API's answer; --wait follows the run.

    Refused (exit 5) when a live run cannot be steered (waiting for an approval, runtime claude-code,
    no gateway, a message already queued under the agent's `reject` policy) or a finished one has no
    checkpoint journal; exit codes with --wait as for `runs submit --wait`."""
    session = session_of(ctx)
    text = read_input(message) or ""
    if not text.strip():
        raise InputError("the message is empty: say what the agent should do next")
    if session.cluster_mode:
        cluster = session.cluster()
        created = cluster.reply(run, text)
        if wait:
            follow_in_cluster(cluster, created, timeout, output)  # exits by the run's phase
        emit(created if output is not Format.TABLE else created["metadata"]["name"], output)
        return
    api = session.api()
    path = f"/api/executions/{segment(run)}/messages"
    if not wait:
        answer = api.post(path, {"message": text})
        emit(answer if output is not Format.TABLE else sent(run, answer), output)
        return

    def reply_run() -> str:
        answer = api.post(path, {"message": text})
        if answer.get("delivery") == STEERED:
            note(f"{sent(run, answer)} (run {run})")
            return run
        note(f"run {answer['id']} continues {run} (correlation {answer.get('correlationId')})")
        return str(answer["id"])

    follow(session, reply_run, timeout, output)


@app.command("interrupt")
def interrupt(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="the live run (Execution) to interrupt")],
    message: Annotated[
        str | None, typer.Argument(help="what to do instead ('-': read standard input)")
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """End a live run's current turn at its next checkpoint: its tool calls not yet started are not
    run. With a message the run goes on with it; without, it ends or waits for the next message (the
    agent's spec.steering.onInterrupt). Refused (exit 5) for a finished run."""
    session = session_of(ctx)
    session.needs_api("runs interrupt")
    text = (read_input(message) or "") if message else ""
    answer = session.api().post(f"/api/executions/{segment(run)}/interrupt", {"message": text})
    emit(answer if output is not Format.TABLE else sent(run, answer), output)


STEERED = "steered"


def sent(run: str, answer: View) -> str:
    """One line for a message sent: a steered run's message state, or the follow-up's name."""
    if answer.get("delivery") != STEERED:
        return str(answer["id"])
    state = (answer.get("message") or {}).get("state", "queued")
    what = "interrupt " if (answer.get("message") or {}).get("interrupt") else ""
    replaced = answer.get("superseded") or []
    also = f" (replaces {len(replaced)} queued)" if replaced else ""
    return f"{what}{state}; delivered at the next turn{also}"


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="run (Execution) name")],
    output: OutputOption = Format.TABLE,
) -> None:
    """Ask the operator to stop a run (202; the run ends Cancelled)."""
    session_of(ctx).needs_api("runs cancel")
    emit(session_of(ctx).api().post(f"/api/executions/{segment(run)}/cancel"), output)
