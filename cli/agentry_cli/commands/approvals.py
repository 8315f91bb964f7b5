"""`agentry approvals list`, `agentry approve|deny <id>`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ..output import Column, Format, emit, field
from ..session import OutputOption, segment, session_of

app = typer.Typer(help="Approvals: the inbox of risky actions waiting for a human.", no_args_is_help=True)

COLUMNS = (
    Column("ID", field("id")),
    Column("RUN", field("execution")),
    Column("RISK", field("risk")),
    Column("TOOL", field("tool")),
    Column("STATE", field("state")),
    Column("SUMMARY", field("summary")),
    Column("EXPIRES", field("expiresAt")),
    Column("DECIDED BY", field("decidedBy")),
)


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    ALL = "all"


ReasonOption = Annotated[str | None, typer.Option("--reason", "-r", help="why (kept with the decision)")]


@app.command("list")
def list_approvals(
    ctx: typer.Context,
    state: Annotated[State, typer.Option(help="which ones")] = State.PENDING,
    output: OutputOption = Format.TABLE,
) -> None:
    """Approvals, newest request first (pending ones unless --state says otherwise)."""
    session_of(ctx).needs_api("approvals list")
    params = {"state": None if state is State.ALL else state.value, "limit": 100}
    emit({"items": session_of(ctx).api().pages("/api/approvals", params)}, output, COLUMNS, rows_of="items")


def decide(ctx: typer.Context, approval: str, approved: bool, reason: str | None, output: Format) -> None:
    session_of(ctx).needs_api("approve/deny")
    body = {"approved": approved, "reason": reason} if reason else {"approved": approved}
    emit(session_of(ctx).api().post(f"/api/approvals/{segment(approval)}/decision", body), output)


def approve(
    ctx: typer.Context,
    approval: Annotated[str, typer.Argument(help="approval id (agentry approvals list)")],
    reason: ReasonOption = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Let the waiting run go on with its risky action."""
    decide(ctx, approval, True, reason, output)


def deny(
    ctx: typer.Context,
    approval: Annotated[str, typer.Argument(help="approval id (agentry approvals list)")],
    reason: ReasonOption = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Refuse the risky action: the run is cancelled."""
    decide(ctx, approval, False, reason, output)
