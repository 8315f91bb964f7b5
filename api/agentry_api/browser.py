"""A browser gets a page, never raw JSON.

Error answers are JSON problem bodies (`main._problem`, and the middlewares' own). When the request
is a browser's navigation to a dashboard page, `BrowserPages` renders that body as HTML with the same
status and headers: the sign-in page when the answer means "sign in" (401, or 429 for the guest
sessions of this address), an error page otherwise. Both load app.js, so the `#token=` link `make dev`
prints signs in whatever the guest limit says. API paths, and clients that prefer JSON, get the JSON.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routers.pages import templates

# Never pages: the JSON API, static files, probes and the OpenAPI document.
NOT_PAGES = ("/api/", "/static/", "/healthz", "/readyz", "/openapi.json")
SIGN_IN_LIMITS = {"guest_sessions"}  # a 429 that only signing in gets past


def quality(accept: str, media: str) -> float:
    """The q that an Accept header gives `media`: that of its most specific matching range."""
    kind = media.split("/", 1)[0]
    best, rank = 0.0, -1
    for part in accept.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        this = {media: 2, f"{kind}/*": 1, "*/*": 0}.get(name.lower(), -1)
        if this > rank:
            q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
            try:
                best, rank = float(q), this
            except ValueError:
                best, rank = 0.0, this
    return best


def wants_page(scope: Scope) -> bool:
    """A GET of a dashboard path by a client that takes HTML at least as gladly as JSON."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    path = str(scope["path"])
    if path == "/api" or path.startswith(NOT_PAGES):
        return False
    accept = dict(scope["headers"]).get(b"accept", b"*/*").decode("latin-1")
    html = quality(accept, "text/html")
    return html > 0 and html >= quality(accept, "application/json")


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def render(status: int, problem: dict[str, Any], oidc_signin_url: str | None) -> bytes:
    """The page for a problem body: the sign-in page, or the error page."""
    detail = problem.get("detail")
    reason = detail if isinstance(detail, str) else str(problem.get("reason", "Error"))
    context = {"user": None, "reason": reason, "correlation_id": problem.get("correlationId", "")}
    if status == 401 or (status == 429 and problem.get("limit") in SIGN_IN_LIMITS):
        context |= {"page": "signin", "oidc_signin_url": oidc_signin_url}
        return templates.get_template("signin.html").render(context).encode()
    context |= {"page": "error", "title": f"{status} {phrase(status)}"}
    return templates.get_template("error.html").render(context).encode()


class BrowserPages:
    """Pure ASGI middleware: a JSON error answer to a page navigation becomes a page. Everything else
    (API paths, successes, streams) passes through untouched and unbuffered."""

    def __init__(self, app: ASGIApp, oidc_signin_url: str | None = None) -> None:
        self.app = app
        self.oidc_signin_url = oidc_signin_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not wants_page(scope):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body = bytearray()

        async def send_page(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                kind = MutableHeaders(raw=list(message.get("headers", []))).get("content-type", "")
                if message["status"] >= 400 and kind.startswith("application/json"):
                    held = message  # an error body: kept until it is complete
                    return
            elif held is not None and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._answer(held, bytes(body), send)
                return
            await send(message)

        await self.app(scope, receive, send_page)

    async def _answer(self, start: Message, body: bytes, send: Send) -> None:
        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
        if not isinstance(problem, dict):  # not a problem body (or a HEAD's empty one): as it was
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        page = render(start["status"], problem, self.oidc_signin_url)
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        headers["content-type"] = "text/html; charset=utf-8"
        headers["content-length"] = str(len(page))
        await send({**start, "headers": headers.raw})
        await send({"type": "http.response.body", "body": page})
