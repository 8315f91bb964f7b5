"""Where a notification goes: a sink's secrets at rest, its address rule, and one attempt to send.

A sink's URL and signing secret are sealed with AES-GCM under a key derived from the API's session
secret (the same on every replica) and bound to the subscription's id, so Firestore holds neither in
the clear and a sealed sink cannot be moved to another subscription. Addresses follow the http tool's
rule (`agentry_common.netaddr`): a private, loopback, link-local or metadata address is refused unless
an admin lists it (or its name, or a CIDR holding it) in `notify_allowed_hosts`; checked on the URL at
subscribe time and on the resolved address at every attempt, which then connects to that address.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentry_common.netaddr import IPAddress, address_problem

KEY_CONTEXT = b"agentry-notification-sinks/v1"
DEFAULT_PORTS = {"http": 80, "https": 443}


class SinkRefused(Exception):
    """The sink's address is not allowed (or not an address at all); the message says why."""


@dataclass(frozen=True)
class Sink:
    url: str
    secret: str | None  # webhook sinks: the signing secret; Slack: none (the URL is the secret)


class SinkCipher:
    def __init__(self, session_secret: str) -> None:
        self._aead = AESGCM(hmac.new(session_secret.encode(), KEY_CONTEXT, hashlib.sha256).digest())

    def seal(self, sub_id: str, sink: Sink) -> str:
        nonce = os.urandom(12)
        plain = json.dumps({"url": sink.url, "secret": sink.secret}).encode()
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plain, sub_id.encode())).decode()

    def open(self, sub_id: str, sealed: str) -> Sink:
        """The sink; ValueError if it does not open (the session secret changed, or tampering)."""
        try:
            raw = base64.b64decode(sealed)
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], sub_id.encode()))
        except (InvalidTag, ValueError) as exc:
            raise ValueError(
                "the sink does not open with this API's key (was the session secret changed?)"
            ) from exc
        return Sink(str(data["url"]), data.get("secret"))


def url_hint(url: str) -> str:
    """What may be shown of a sink's URL: scheme and host (the path of a Slack URL is its secret)."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}/…"


def _allowed(host: str, ip: IPAddress, allowed: Iterable[str]) -> bool:
    for entry in allowed:
        text = entry.strip().lower()
        try:
            if ip in ipaddress.ip_network(text, strict=False):
                return True
        except ValueError:
            if text and text == host.lower().rstrip("."):
                return True
    return False


def check_url(url: str) -> httpx.URL:
    """The URL if it is an absolute http(s) URL without credentials; SinkRefused otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise SinkRefused(f"not a URL: {exc}") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise SinkRefused("the URL must be http:// or https://")
    if not parsed.host:
        raise SinkRefused("the URL has no host")
    if parsed.userinfo:
        raise SinkRefused("credentials in the URL (user:password@) are refused")
    return parsed


async def resolve(url: httpx.URL, allowed: Iterable[str], seconds: float = 5.0) -> list[IPAddress]:
    """Every address the URL's host stands for, each checked; SinkRefused naming the first refused."""
    host = url.host
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        port = url.port or DEFAULT_PORTS[url.scheme]
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), seconds
            )
        except (OSError, TimeoutError) as exc:
            raise SinkRefused(f"host {host!r} does not resolve: {exc or type(exc).__name__}") from None
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip not in addresses:
                addresses.append(ip)
    if not addresses:
        raise SinkRefused(f"host {host!r} resolves to no address")
    allowed = list(allowed)
    for ip in addresses:
        problem = address_problem(ip)
        if problem is not None and not _allowed(host, ip, allowed):
            raise SinkRefused(
                f"{host} is {ip}, {problem}: refused (an admin may allow it in notify_allowed_hosts)"
            )
    return addresses


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    final: bool = False  # no retry can succeed (the subscription is gone): dead at once


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    allowed: Iterable[str],
    seconds: float,
) -> Attempt:
    """One POST to the sink at a checked address (the name as Host and SNI); 2xx is delivered."""
    try:
        target = check_url(url)
        ip = (await resolve(target, allowed))[0]
    except SinkRefused as exc:
        return Attempt(False, None, f"refused: {exc}")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    host_header = (
        target.host if target.port in (None, DEFAULT_PORTS[target.scheme]) else f"{target.host}:{target.port}"
    )
    try:
        response = await client.post(
            str(target.copy_with(host=str(ip))),
            content=body,
            headers={**headers, "Host": host_header},
            timeout=seconds,
            extensions=extensions,
        )
    except httpx.TimeoutException:
        return Attempt(False, None, f"no answer within {seconds:g} s")
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= response.status_code < 300:
        return Attempt(True, response.status_code, None)
    return Attempt(False, response.status_code, f"answered {response.status_code}")
