"""A request-body ceiling for ASGI apps, enforced before anything parses or buffers the body.

FastAPI reads and parses a JSON body before any auth dependency runs, so without this one
unauthenticated request of a few tens of MB can exhaust a pod's memory. The limit is checked twice:
against `Content-Length` before the app sees the request, and on the bytes actually received (for
chunked bodies and lying headers), so at most `max_bytes` plus one chunk is ever held. The rest of a
refused body is read and dropped (bounded) before the 413, so the client is not reset before it
reads the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
Render = Callable[[int], tuple[bytes, bytes]]  # limit -> (content type, body)


LINGER_BYTES = 64 * 2**20  # read and dropped after a refusal, so the client gets the 413 (see _discard)
LINGER_SECONDS = 10.0


class _TooLarge(Exception):
    pass


def problem_json(limit: int) -> tuple[bytes, bytes]:
    """The default 413 body: `{"detail": ...}` naming the limit."""
    detail = f"request body larger than {limit} bytes"
    return b"application/json", json.dumps({"detail": detail}).encode()


class BodyLimit:
    """Pure ASGI middleware: 413 for a body over `max_bytes`, without reading the rest of it."""

    def __init__(self, app: ASGIApp, max_bytes: int, render: Render = problem_json) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if declared <= LINGER_BYTES:
                await _discard(receive)
            await self._refuse(send)
            return
        received = 0
        exceeded = started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Frameworks may turn the receive error into a response of their own (FastAPI: 400
            # "error parsing the body"): once over the limit, the answer is ours, whatever they send.
            nonlocal started, refused
            if exceeded and not started:
                if not refused:
                    refused = True
                    await _discard(receive)
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started and not refused:
                await _discard(receive)
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        content_type, body = self.render(self.max_bytes)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _discard(receive: Receive) -> None:
    """Read and drop the rest of a refused body, within bounds, before answering.

    A server that closes with unread request bytes makes the kernel send a reset, and the client may
    lose the 413 it was about to read. ASGI servers stop delivering the body once the response is
    complete, so the rest is read first (never kept), up to LINGER_BYTES or LINGER_SECONDS.
    """
    discarded = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while discarded <= LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _content_length(scope: MutableMapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
