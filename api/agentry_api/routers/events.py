"""GET /api/events: the dashboard's single source of updates (Server-Sent Events).

A new stream starts with one `snapshot` event (agents, recent executions, pending approvals) whose
id is the user's last event number, then `report` events with increasing ids. A stream resumed with
`Last-Event-ID` (or `?cursor=`) gets no snapshot: it replays every event after that id from
Firestore, page by page, then continues live: it re-reads Firestore whenever the bus wakes it (an
event of its user in this process or, through the Firestore listener, in another replica) and every
`sse_poll_seconds` in any case. Comments (`: ping`) are sent as heartbeats. Past
`sse_max_connections` open streams in this process the answer is 503 with Retry-After.

The credential the stream was opened with is asked again before each delivery and every
`credential_check_seconds` while idle (credentials.py); once it no longer holds, the stream sends one
`end` event saying why and closes, and gives its slot back as any closed stream does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..auth import User
from ..credentials import LiveCredential
from ..deps import AppState, CurrentUser, StateDep
from ..metrics import SSE_CONNECTIONS, SSE_REJECTED
from ..services.quotas import STREAM_TTL_SECONDS
from ..services.views import agent_out, approval_out, execution_out

log = logging.getLogger("agentry.api.events")

router = APIRouter(tags=["events"])
REPLAY_PAGE = 500
RETRY_MS = 3000


def parse_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 18:
        return None
    return int(value.strip())


async def snapshot(state: AppState, user: User) -> tuple[int, dict[str, Any]]:
    seq = await state.store.last_event_seq(user.id)
    agents = [agent_out(d).model_dump(mode="json") for d in await state.store.list_agents(user.id)]
    executions = await state.store.list_executions(user.id, limit=50)
    approvals = await state.store.list_approvals(user.id, "pending")
    return seq, {
        "kind": "snapshot",
        "seq": seq,
        "agents": agents,
        "executions": [execution_out(d).model_dump(mode="json", exclude={"input"}) for d in executions],
        "approvals": [approval_out(d).model_dump(mode="json") for d in approvals],
    }


_releasing: set[asyncio.Task[None]] = set()


def release(state: AppState, user_id: str, lease: str) -> None:
    """Give the stream's slot back (if this fails, the lease lapses by itself)."""

    async def go() -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(state.store.close_stream(user_id, lease), 10)

    task = asyncio.get_running_loop().create_task(go())
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)


def report(event: dict[str, Any]) -> ServerSentEvent:
    """`eventTime` is when the event was recorded; `createdAt` is too, unless the payload has its own
    (an execution report's is the run's creation time)."""
    at = event.get("createdAt")
    data = {"kind": event["kind"], "seq": event["seq"], "createdAt": at, **event["data"], "eventTime": at}
    return ServerSentEvent(json.dumps(data, default=str), event="report", id=str(event["seq"]))


def end(reason: str) -> ServerSentEvent:
    """The last event of a stream whose credential ended (no id: Last-Event-ID stays the last report's)."""
    return ServerSentEvent(json.dumps({"kind": "end", "reason": reason}), event="end")


async def stream(
    state: AppState, user: User, start: int | None, lease: str
) -> AsyncIterator[ServerSentEvent]:
    """The stream's body; the caller has counted it in `state.sse_open` and taken its lease (one of
    the user's `streams` slots) already; the lease is renewed while the stream is open."""
    SSE_CONNECTIONS.inc()
    live = LiveCredential(state, user)
    renewed = time.monotonic()
    try:
        if start is None:
            last, snap = await snapshot(state, user)
            yield ServerSentEvent(
                json.dumps(snap, default=str), event="snapshot", id=str(last), retry=RETRY_MS
            )
        else:
            last = start
        with state.bus.subscribe(user.id) as sub:
            while True:
                sub.arm()
                events = await state.store.events_after(user.id, last, REPLAY_PAGE)
                reason = await live.ended()  # after the read: nothing written after the end goes out
                if reason is None:
                    for event in events:
                        last = int(event["seq"])
                        yield report(event)
                    if len(events) < REPLAY_PAGE:
                        reason = await live.idle(sub, state.settings.sse_poll_seconds)
                if reason is not None:
                    yield end(reason)
                    return
                if time.monotonic() - renewed > STREAM_TTL_SECONDS / 3:
                    renewed = time.monotonic()
                    await state.store.renew_stream(user.id, lease, STREAM_TTL_SECONDS)
    finally:
        state.sse_open -= 1
        SSE_CONNECTIONS.dec()
        # In a task of its own: a disconnect cancels this one, whose scope would refuse the write.
        release(state, user.id, lease)


@router.get(
    "/api/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "snapshot, then report events"}},
)
async def events(
    user: CurrentUser,
    state: StateDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=32, description="Same as Last-Event-ID.")] = None,
) -> EventSourceResponse:
    if state.sse_open >= state.settings.sse_max_connections:
        SSE_REJECTED.inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"too many open event streams ({state.settings.sse_max_connections}); retry shortly",
            headers={"Retry-After": "5"},
        )
    start = parse_event_id(last_event_id if last_event_id is not None else cursor)
    lease = "s" + uuid.uuid4().hex
    await state.quotas.stream_open(user, lease)  # 429 past the user's `streams` quota
    state.sse_open += 1
    return EventSourceResponse(
        stream(state, user, start, lease),
        ping=state.settings.sse_heartbeat_seconds,
        headers={"Cache-Control": "no-store"},
    )
