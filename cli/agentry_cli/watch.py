"""Watching one run on the event stream: `runs submit --wait` and `logs -f`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

from agentry_common.models import TERMINAL_PHASES, Phase

from .stream import Event, Follower

View = dict[str, Any]


def run_view(event: Event, name: str) -> View | None:
    """The run's view carried by `event` (a snapshot listing it, or an execution report), if any."""
    data = event.data
    if event.event == "snapshot":
        for item in data.get("executions") or []:
            if isinstance(item, Mapping) and item.get("id") == name:
                return dict(item)
        return None
    if data.get("kind") == "execution" and data.get("execution") == name:
        return dict(data)
    return None


def approval_of(event: Event, name: str) -> View | None:
    data = event.data
    if event.event == "report" and data.get("kind") == "approval" and data.get("execution") == name:
        return dict(data)
    return None


def stops(phase: str | None, stop_at_approval: bool) -> bool:
    if phase is None:
        return False
    return phase in TERMINAL_PHASES or (stop_at_approval and phase == Phase.WAITING_APPROVAL)


def event_time(view: Mapping[str, Any]) -> str:
    """When the report was recorded (`eventTime`); a view without one (a snapshot's) was last changed
    at `updatedAt`. Never `createdAt`: in an execution report that is the run's creation time."""
    return str(view.get("eventTime") or view.get("updatedAt") or "")


def event_line(view: Mapping[str, Any]) -> str:
    """A run's report as one line, in the form of the API's stored-events log."""
    text = f"{event_time(view)} {view.get('action') or 'status'} phase={view.get('phase')}"
    if view.get("reason"):
        text += f" reason={view['reason']}"
    if view.get("message"):
        text += f": {view['message']}"
    return text.strip()


def approval_line(approval: Mapping[str, Any]) -> str:
    what = f"approval {approval.get('id')} {approval.get('action') or approval.get('state')}"
    if approval.get("tool"):
        what += f": {approval.get('risk') or ''} {approval['tool']}: {approval.get('summary') or ''}"
    if approval.get("decidedBy"):
        what += f" (by {approval['decidedBy']}: {approval.get('state')})"
    return what.strip()


async def until_stopped(
    events: AsyncIterator[Event],
    name: str,
    *,
    stop_at_approval: bool,
    on_view: Callable[[View], None],
    on_approval: Callable[[View], None],
) -> View | None:
    """Read `events` until the run ends (or waits for approval); the last view of the run."""
    last: View | None = None
    async for event in events:
        approval = approval_of(event, name)
        if approval is not None:
            on_approval(approval)
        view = run_view(event, name)
        if view is None:
            continue
        last = view
        on_view(view)
        if stops(view.get("phase"), stop_at_approval):
            return view
    return last


async def start(follower: Follower) -> AsyncGenerator[Event, None]:
    """The follower's events, after its first (the snapshot) has arrived: returned so that whatever
    the caller does next (submit a run, read its state) happens after the stream's starting point."""
    events = follower.events()
    first = await anext(events)

    async def chained() -> AsyncGenerator[Event, None]:
        try:
            yield first
            async for event in events:
                yield event
        finally:  # closed here, in order: left to the loop's shutdown, both would close at once
            await events.aclose()

    return chained()
