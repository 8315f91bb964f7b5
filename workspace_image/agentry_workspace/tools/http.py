"""`http`: requests to the agent's allow-list (spec.http.allowedHosts), nothing else.

A request to a host not on the list is refused outright, whatever the approval settings and
whatever a tool result or web page told the model: an allow-list is the defence against prompt
injection that tries to send data elsewhere. Redirects are followed by hand so that every hop is
checked. GET/HEAD are GREEN; methods that change something on the other side are RED.

Allow-list entries: "api.example.com" (that host, any port), "api.example.com:8443" (that port
only), "*.example.com" (any subdomain, not the apex).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import Field

from agentry_common.models import Risk

from ..providers.types import ToolSpec
from .base import (
    Assessment,
    ToolArgs,
    ToolContext,
    ToolOutcome,
    one_line,
    parse_args,
    truncate_bytes,
)

SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 4 * 1024 * 1024
SHOWN_HEADERS = ("content-type", "content-length", "location")


def host_allowed(url: httpx.URL, allowed: tuple[str, ...]) -> bool:
    host = url.host.lower().rstrip(".")
    port = url.port or (443 if url.scheme == "https" else 80)
    for entry in allowed:
        entry = entry.strip().lower()
        if not entry:
            continue
        want_port: int | None = None
        name = entry
        if entry.count(":") == 1:  # host:port (IPv6 literals are written without a port)
            name, _, port_text = entry.partition(":")
            if not port_text.isdigit():
                continue
            want_port = int(port_text)
        name = name.strip("[]").rstrip(".")
        if want_port is not None and want_port != port:
            continue
        if name.startswith("*."):
            if host.endswith(name[1:]) and host != name[2:]:
                return True
        elif host == name:
            return True
    return False


def check_url(raw: str, allowed: tuple[str, ...]) -> str | None:
    """None if the URL may be fetched, else the reason it may not."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as err:
        return f"invalid URL {raw!r}: {err}"
    if url.scheme not in ("http", "https"):
        return f"scheme {url.scheme!r} refused: only http and https"
    if not url.host:
        return f"URL {raw!r} has no host"
    if not host_allowed(url, allowed):
        listed = ", ".join(allowed) if allowed else "none"
        return f"host {url.host!r} is not in the agent's http.allowedHosts (allowed: {listed})"
    return None


class HttpArgs(ToolArgs):
    url: str = Field(min_length=1)
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None


class HttpTool:
    name = "http"

    def spec(self, ctx: ToolContext) -> ToolSpec:
        hosts = ", ".join(ctx.allowed_hosts) if ctx.allowed_hosts else "(none)"
        return ToolSpec(
            name=self.name,
            description=(
                f"Make an HTTP request. Only these hosts are reachable: {hosts}. Requests to any "
                "other host are refused. GET and HEAD run directly; POST, PUT, PATCH and DELETE "
                "may need a human's approval. Returns status, a few headers and the body "
                f"(at most {ctx.max_output} bytes)."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "method": {
                        "type": "string",
                        "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                        "default": "GET",
                    },
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body": {"type": "string"},
                },
                "required": ["url"],
                "additionalProperties": False,
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        method = str(args.get("method", "GET")).upper()
        risk = Risk.GREEN if method in SAFE_METHODS else Risk.RED
        refusal = check_url(str(args.get("url", "")), ctx.allowed_hosts)
        return Assessment(risk, refusal=refusal)

    def describe(self, args: Mapping[str, Any]) -> str:
        method = str(args.get("method", "GET")).upper()
        return f"{method} {one_line(str(args.get('url', '')), 300)}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(HttpArgs, args)
        url = parsed.url
        method = parsed.method
        body = parsed.body.encode("utf-8") if parsed.body is not None else None
        async with httpx.AsyncClient(follow_redirects=False, timeout=ctx.timeout, trust_env=True) as client:
            for _ in range(MAX_REDIRECTS + 1):
                refusal = check_url(url, ctx.allowed_hosts)
                if refusal is not None:
                    return ToolOutcome(f"refused: {refusal}", True, details={"refused": True})
                request = client.build_request(method, url, headers=parsed.headers, content=body)
                try:
                    response = await client.send(request, stream=True)
                    try:
                        data = await _read_capped(response)
                    finally:
                        await response.aclose()
                except httpx.HTTPError as err:
                    return ToolOutcome(f"request failed: {type(err).__name__}: {err}", True)
                location = response.headers.get("location")
                if response.is_redirect and location and method in SAFE_METHODS:
                    url = str(response.url.join(location))
                    continue
                return _render(response, data, ctx.max_output)
        return ToolOutcome(f"too many redirects (more than {MAX_REDIRECTS})", True)


async def _read_capped(response: httpx.Response) -> bytes:
    # Bounded memory whatever the server sends; the model sees at most max_output bytes anyway.
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            break
    return bytes(data)


def _render(response: httpx.Response, data: bytes, limit: int) -> ToolOutcome:
    text, cut = truncate_bytes(data, limit)
    head = [f"HTTP {response.status_code} {response.reason_phrase}"]
    head += [f"{h}: {response.headers[h]}" for h in SHOWN_HEADERS if h in response.headers]
    return ToolOutcome(
        "\n".join(head) + "\n\n" + text,
        is_error=response.status_code >= 400,
        details={"status": response.status_code, "truncatedBytes": cut},
    )
