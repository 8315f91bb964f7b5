"""`http`: requests to the agent's allow-list (spec.http.allowedHosts), nothing else.

A request to a host not on the list is refused outright, whatever the approval settings and
whatever a tool result or web page told the model: an allow-list is the defence against prompt
injection that tries to send data elsewhere. GET/HEAD are GREEN; methods that change something on
the other side are RED.

What the list means (entries, normalisation, address rules) is in `netpolicy`. Here: the name is
resolved once, every address is checked, and the connection goes to a checked address with the
name as Host and TLS SNI (no second lookup that DNS rebinding could answer differently). The
model may not set Host, hop-by-hop or proxy headers; proxy variables and .netrc are ignored
(trust_env=False); redirects are followed by hand, at most MAX_REDIRECTS hops, each re-checked,
and credentials are dropped when a hop changes origin.

Behind the egress proxy (AGENTRY_EGRESS_PROXY set, docs/security.md "Egress") every check above still
runs first, then the request goes through the proxy by name: runs have no other way out, and the proxy
holds them to the same allow-list and refuses private addresses itself.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import Field

from agentry_common.constants import ENV_EGRESS_PROXY
from agentry_common.models import Risk
from agentry_common.tls import client_context
from agentry_llm.types import ToolSpec

from .base import (
    Assessment,
    ToolArgs,
    ToolContext,
    ToolOutcome,
    one_line,
    parse_args,
    truncate_bytes,
)
from .netpolicy import (
    IPAddress,
    Refused,
    ResolveError,
    Resolver,
    Target,
    check_headers,
    resolve,
    system_resolver,
)
from .netpolicy import check_url as check_target

SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_REDIRECTS = 5
MAX_ADDRESSES = 4  # connection attempts per hop, each to a checked address
MAX_BODY_BYTES = 4 * 1024 * 1024
SHOWN_HEADERS = ("content-type", "content-length", "location")
CROSS_ORIGIN_DROPPED = frozenset({"authorization", "cookie"})


def check_url(raw: str, allowed: tuple[str, ...]) -> str | None:
    """None if the allow-list admits the URL (before resolution), else the reason it does not."""
    try:
        check_target(raw, allowed)
    except Refused as err:
        return str(err)
    return None


def host_allowed(url: httpx.URL, allowed: tuple[str, ...]) -> bool:
    return check_url(str(url), allowed) is None


def check_request(args: Mapping[str, Any], allowed: tuple[str, ...]) -> str | None:
    """The static checks (URL and headers) for assess(); addresses are checked in run()."""
    headers = args.get("headers")
    if isinstance(headers, Mapping):
        try:
            check_headers(headers)
        except Refused as err:
            return str(err)
    return check_url(str(args.get("url", "")), allowed)


class HttpArgs(ToolArgs):
    url: str = Field(min_length=1)
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None


class HttpTool:
    name = "http"

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        # All default to the real thing; tests pass a resolver for made-up names, a test CA, a proxy.
        self._resolver: Resolver = resolver or system_resolver
        # httpx's own default (certifi's roots, no SSL_CERT_FILE), built once per process.
        self._verify: ssl.SSLContext | bool = client_context(trust_env=False) if verify is None else verify
        self._proxy = proxy if proxy is not None else os.environ.get(ENV_EGRESS_PROXY) or None

    def spec(self, ctx: ToolContext) -> ToolSpec:
        hosts = ", ".join(ctx.allowed_hosts) if ctx.allowed_hosts else "(none)"
        return ToolSpec(
            name=self.name,
            description=(
                f"Make an HTTP request. Only these hosts are reachable: {hosts} (an entry without "
                "a scheme or port means https on port 443). Requests to any other host, to "
                "private or loopback addresses, and Host, hop-by-hop or proxy headers are refused. "
                "GET and HEAD run directly; POST, PUT, PATCH and DELETE "
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
        return Assessment(risk, refusal=check_request(args, ctx.allowed_hosts))

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return str(args.get("method", "GET")).upper() in ("GET", "HEAD")

    def describe(self, args: Mapping[str, Any]) -> str:
        method = str(args.get("method", "GET")).upper()
        return f"{method} {one_line(str(args.get('url', '')), 300)}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(HttpArgs, args)
        method = parsed.method
        body = parsed.body.encode("utf-8") if parsed.body is not None else None
        headers = dict(parsed.headers)
        url = parsed.url
        origin: tuple[str, str, int] | None = None
        for hop in range(MAX_REDIRECTS + 1):
            try:
                if hop == 0:
                    check_headers(headers)
                target = check_target(url, ctx.allowed_hosts)
                addresses = await resolve(target, ctx.allowed_hosts, self._resolver, ctx.timeout)
            except Refused as err:
                where = f"redirect hop {hop} to {one_line(url, 300)}: " if hop else ""
                return ToolOutcome(f"refused: {where}{err}", True, details={"refused": True, "hop": hop})
            except ResolveError as err:
                return ToolOutcome(f"request failed: {err}", True)
            if origin is not None and target.origin != origin:
                headers = {k: v for k, v in headers.items() if k.lower() not in CROSS_ORIGIN_DROPPED}
            origin = target.origin
            try:
                response, data = await self._fetch(method, target, addresses, headers, body, ctx.timeout)
            except httpx.HTTPError as err:
                return ToolOutcome(f"request failed: {type(err).__name__}: {err}", True)
            location = response.headers.get("location")
            if response.is_redirect and location and method in SAFE_METHODS:
                try:
                    url = str(target.url.join(location))
                except (httpx.InvalidURL, ValueError) as err:
                    return ToolOutcome(f"refused: invalid redirect {location!r}: {err}", True)
                continue
            return _render(response, data, ctx.max_output)
        return ToolOutcome(f"too many redirects (more than {MAX_REDIRECTS})", True)

    async def _fetch(
        self,
        method: str,
        target: Target,
        addresses: list[IPAddress],
        headers: dict[str, str],
        body: bytes | None,
        seconds: float,
    ) -> tuple[httpx.Response, bytes]:
        """Send to the first checked address that accepts a connection (or through the proxy)."""
        if self._proxy:
            return await self._send_via_proxy(method, target, headers, body, seconds)
        error: httpx.ConnectError | None = None
        for ip in addresses[:MAX_ADDRESSES]:
            try:
                return await self._send(method, target, ip, headers, body, seconds)
            except httpx.ConnectError as err:
                error = err
        assert error is not None  # addresses is never empty (check_addresses)
        raise error

    async def _send(
        self,
        method: str,
        target: Target,
        ip: IPAddress,
        headers: dict[str, str],
        body: bytes | None,
        seconds: float,
    ) -> tuple[httpx.Response, bytes]:
        # A client per connection: no pooled connection (verified for another name) is reused,
        # no cookies carry over, no environment (proxies, .netrc, SSL_CERT_FILE) is consulted.
        transport = httpx.AsyncHTTPTransport(verify=self._verify, trust_env=False, retries=0)
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, timeout=seconds
        ) as client:
            request = pinned_request(client, method, target, ip, headers, body)
            response = await client.send(request, stream=True)
            try:
                data = await _read_capped(response)
            finally:
                await response.aclose()
        return response, data

    async def _send_via_proxy(
        self, method: str, target: Target, headers: dict[str, str], body: bytes | None, seconds: float
    ) -> tuple[httpx.Response, bytes]:
        # The proxy resolves the name; it refuses private addresses and hosts off the allow-list too.
        assert self._proxy is not None
        transport = httpx.AsyncHTTPTransport(
            verify=self._verify, trust_env=False, retries=0, proxy=httpx.Proxy(self._proxy)
        )
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, timeout=seconds
        ) as client:
            request = client.build_request(method, target.url, headers=headers, content=body)
            response = await client.send(request, stream=True)
            try:
                data = await _read_capped(response)
            finally:
                await response.aclose()
        return response, data


def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    target: Target,
    ip: IPAddress,
    headers: Mapping[str, str],
    body: bytes | None,
) -> httpx.Request:
    """A request to the checked address that still names the host (Host header, TLS SNI)."""
    extensions: dict[str, Any] = {}
    if isinstance(target.host, str):
        extensions["sni_hostname"] = target.host
    return client.build_request(
        method,
        target.url.copy_with(host=str(ip)),
        headers={**headers, "Host": target.host_header},
        content=body,
        extensions=extensions,
    )


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
