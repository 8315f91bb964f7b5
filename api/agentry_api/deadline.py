"""A deadline on every HTTP request until its answer starts: 503 with Retry-After when it passes.

A dependency that stops answering (Firestore restarting: its client retries UNAVAILABLE for up to a
minute; an API server that accepts connections but never answers) would otherwise hold each request
until the client gives up, and the requests pile up. Past the deadline the handler is cancelled and
the caller is told to retry. Only the time before the response starts counts: an event stream or a
large download runs as long as it needs once it has started. A write cancelled this way may still
have been applied; it was never acknowledged, and a retry meets the usual conflict or quota checks.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .services.errors import REQUEST_ID

log = logging.getLogger("agentry.api")

RETRY_AFTER_SECONDS = 5


class RequestDeadline:
    """Pure ASGI middleware; `seconds` from AGENTRY_REQUEST_DEADLINE_SECONDS."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The handler runs in the request's own task under a timeout that its first answer turns off:
        # no task, event or wait per request (a task each cost two loop turns and ~5 us).
        started = False
        deadline = asyncio.timeout(self.seconds)

        async def send_marking_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not deadline.expired():  # (a handler may answer after its cancellation)
                    deadline.reschedule(None)  # answering: no deadline on the rest (streams)
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_marking_start)
        except Exception:
            if started or not deadline.expired():
                raise  # the handler's own error (its own TimeoutError too), not the deadline's
        if started or not deadline.expired():
            return
        # Past the deadline before answering, however the cancelled handler ended: the 503.
        ident = str(scope.get(REQUEST_ID) or "")
        log.warning(
            "request %s %s passed its %.0f s deadline correlation_id=%s",
            scope.get("method"),
            scope.get("path"),
            self.seconds,
            ident,
        )
        body = {
            "reason": "Unavailable",
            "detail": "a dependency (the store or the cluster) did not answer in time; retry shortly",
            "correlationId": ident,
        }
        response = JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        await response(scope, receive, send)
