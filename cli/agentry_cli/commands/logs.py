"""`agentry logs <run> [-f]`: the run's log, then (with -f) its progress live until it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from typing import Annotated, Any

import typer

from ..exits import ExitCode, for_phase
from ..output import note
from ..session import Session, segment, session_of
from ..stream import Follower
from ..watch import View, approval_line, event_line, start, stops, until_stopped


def new_lines(before: Sequence[str], after: Sequence[str]) -> list[str]:
    """The lines of `after` not printed yet: its tail past `before` when that is a prefix."""
    if list(after[: len(before)]) == list(before):
        return list(after[len(before) :])
    return list(after)


def print_lines(lines: Sequence[str]) -> None:
    for line in lines:
        print(line, flush=True)


async def follow(session: Session, name: str) -> View | None:
    """Subscribe, then read the run's state (nothing can fall between the two), then follow."""
    async with aclosing(await start(Follower(session.target(), notice=note))) as events:
        current: View = session.api().get(f"/api/executions/{segment(name)}", patient=True)
        if stops(current.get("phase"), stop_at_approval=False):
            print(event_line(current), flush=True)  # ended before the stream opened: its end, as followed
            return current
        return await until_stopped(
            events,
            name,
            stop_at_approval=False,
            on_view=lambda v: print(event_line(v), flush=True),
            on_approval=lambda a: print(approval_line(a), flush=True),
        )


def logs(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="run (Execution) name")],
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="then print its progress live until it ends")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="with -f: stop after this many seconds")] = None,
) -> None:
    """A run's log; with -f, its progress live until it ends.

    The pod's log (or the run's stored events once the pod is gone). With -f the command then follows
    the event stream, resuming after a dropped connection, and exits by how the run ended (0 Succeeded,
    1 Failed/Cancelled/Skipped, 4 --timeout)."""
    session = session_of(ctx)
    session.needs_api("logs")
    api = session.api()
    first: dict[str, Any] = api.get(f"/api/executions/{segment(run)}/logs")
    if first.get("note"):
        note(str(first["note"]))
    printed = list(first.get("lines") or [])
    print_lines(printed)
    if not follow_:
        return
    try:
        view = asyncio.run(asyncio.wait_for(follow(session, run), timeout))
    except TimeoutError:
        note(f"run {run} is not over after {timeout:g} s")
        raise typer.Exit(int(ExitCode.TIMEOUT)) from None
    last: dict[str, Any] = api.get(f"/api/executions/{segment(run)}/logs", patient=True)
    if last.get("source") == "pod" and first.get("source") == "pod":
        print_lines(new_lines(printed, last.get("lines") or []))
    elif last.get("source") == "pod":
        print_lines(last.get("lines") or [])
    phase = (view or {}).get("phase") or ""
    note(f"run {run} ended {phase}")
    raise typer.Exit(int(for_phase(phase)))
