"""Follow the API's event stream (`GET /api/events`, Server-Sent Events) through dropped connections.

A stream starts with a `snapshot` event, then `report` events whose ids are the user's event numbers.
After a dropped connection (or a server that ends the stream) it reconnects with `Last-Event-ID` =
the last id seen, so the API replays every event after it: nothing is missed, nothing repeats.
Deadlines are the caller's (`asyncio.timeout` around the iteration cancels a blocked read).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from . import __version__
from .client import PATIENT_ATTEMPTS, ApiError, error_of
from .config import Target

# Pings come every 15 s by default (AGENTRY_SSE_HEARTBEAT_SECONDS): 60 s of silence is a dead link.
READ_TIMEOUT = 60.0
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_FAILURES = PATIENT_ATTEMPTS  # consecutive failed connections before giving up (about 70 s)
RETRY_STATUSES = (429, 503)  # the user's or the process's stream limit: wait and try again


@dataclass(frozen=True)
class Event:
    event: str  # "snapshot" or "report"
    id: int | None
    data: dict[str, Any]


def parse(event: str, event_id: str, data: str) -> Event | None:
    """One SSE message as an `Event`; None for anything that is not a JSON object."""
    try:
        body = json.loads(data)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    number = int(event_id) if event_id.strip().isdigit() else None
    return Event(event or "message", number, body)


def backoff(failures: int) -> float:
    return BACKOFF[min(failures, len(BACKOFF)) - 1] if failures > 0 else 0.0


class Follower:
    """Iterates the user's events, reconnecting with Last-Event-ID; `notice` hears about reconnects."""

    def __init__(
        self,
        target: Target,
        last_id: int | None = None,
        notice: Callable[[str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target, self.last_id = target, last_id
        self.notice = notice or (lambda _message: None)
        self.transport = transport
        self.connections = 0

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.target.url,
            headers={
                "Authorization": f"Bearer {self.target.token}",
                "User-Agent": f"agentry-cli/{__version__}",
            },
            timeout=httpx.Timeout(30.0, read=READ_TIMEOUT),
            transport=self.transport,
        )

    async def events(self) -> AsyncGenerator[Event, None]:
        failures = 0
        async with self._client() as client:
            while True:
                headers = {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}
                try:
                    async for event in self._connection(client, headers):
                        failures = 0
                        yield event
                    why = "the server ended the stream"
                except (httpx.TransportError, SSEError) as exc:
                    why = f"connection lost ({type(exc).__name__})"
                except ApiError as exc:
                    if exc.status not in RETRY_STATUSES:
                        raise
                    why = exc.one_line()
                failures += 1
                if failures >= MAX_FAILURES:
                    raise ApiError(0, "Unavailable", f"cannot follow events at {self.target.url}: {why}")
                where = f"after event {self.last_id}" if self.last_id is not None else "from the start"
                self.notice(f"{why}; reconnecting, resuming {where}")
                await asyncio.sleep(backoff(failures))

    async def _connection(self, client: httpx.AsyncClient, headers: dict[str, str]) -> AsyncIterator[Event]:
        async with aconnect_sse(client, "GET", "/api/events", headers=headers) as source:
            if source.response.status_code >= 400:
                await source.response.aread()
                raise error_of(source.response)
            self.connections += 1
            async for sse in source.aiter_sse():
                event = parse(sse.event, sse.id, sse.data)
                if event is None:
                    continue
                if event.id is not None:
                    self.last_id = event.id
                yield event
