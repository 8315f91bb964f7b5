"""The Host allow-list: a request for any other name is refused before routing (DNS rebinding).

A rebinding page in a victim's browser reaches the API under the attacker's *name* (it resolved to
an internal address), so checking the name stops it. IP literals are always accepted: a browser
never sends a rebinding request with an IP literal as Host, and kubelet probes, Service ClusterIPs
and pod addresses arrive that way. Starlette's TrustedHostMiddleware cannot express that rule.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .services.errors import REQUEST_ID


def _host_of(header: str) -> str:
    """The name of a Host header, without port or IPv6 brackets, lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed(host_header: str, patterns: Iterable[str]) -> bool:
    host = _host_of(host_header).rstrip(".")
    if not host:
        return False
    if _is_ip(host):
        return True
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or host == pattern:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class TrustedHosts:
    """Pure ASGI middleware: 400 for an HTTP request whose Host is not allowed."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
            if not allowed(host, self.hosts):
                body = json.dumps(
                    {
                        "reason": "UnknownHost",
                        "detail": "this host name is not served here (AGENTRY_TRUSTED_HOSTS)",
                        "correlationId": scope.get(REQUEST_ID),
                    }
                )
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)
