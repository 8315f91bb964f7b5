"""What the http tool may reach: allow-list entries, URL and host normalisation, address rules.

An allow-list entry is `[scheme://]host[:port]`:

* `api.example.com`: https on port 443 only (https is the default scheme, 443 its port);
* `https://api.example.com` / `http://api.example.com`: that scheme on its default port;
* `http://api.example.com:8080`: that scheme on that port;
* `api.example.com:8443`: that port, http or https (naming a port is the widening);
* `*.example.com`: any subdomain (not the apex), with the same scheme/port rules;
* `10.0.0.5`, `[fd00::5]:8080`: an IP address, which also lifts the address rules for that IP.

Hosts are compared after normalisation (lower case, no trailing dot, IDNA, every IPv4 spelling
such as `0x7f.1`, `2130706433` or `127.1` read as the dotted address it means). Whatever a name
resolves to is checked before connecting: loopback, private, link-local, the metadata server,
multicast, reserved, unspecified and IPv6 forms that embed or tunnel IPv4 are refused unless an
entry names that IP (the rule itself: `agentry_common.netaddr`, shared with the API's notification sinks).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import httpx
import idna

# The address rule lives in agentry_common.netaddr (shared with the API's notification sinks).
from agentry_common.netaddr import IPAddress as IPAddress
from agentry_common.netaddr import address_problem as address_problem

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
RULE = "not in the agent's http.allowedHosts"

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_ENTRY = re.compile(r"^(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[^\]]*\]|[^:]+)(?::(?P<port>[0-9]{1,5}))?$")

# Headers the model may not set: the tool derives Host from the URL; hop-by-hop and proxy headers
# (and the forwarding family) would let a request steer a proxy, CDN or virtual host behind an
# allowed name.
REFUSED_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "forwarded",
        "via",
        "x-real-ip",
        "x-host",
        "x-original-url",
        "x-rewrite-url",
        "x-original-host",
        "x-http-host-override",
    }
)
REFUSED_HEADER_PREFIXES = ("proxy-", "x-forwarded-", ":")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Refused(Exception):
    """A request the policy will not make; str(err) is the reason, written for the model."""


class ResolveError(Exception):
    """The name did not resolve (a failure, not a refusal)."""


@dataclass(frozen=True)
class Entry:
    text: str
    scheme: str | None
    host: str | IPAddress
    wildcard: bool
    port: int | None

    def allows(self, scheme: str, host: str | IPAddress, port: int) -> bool:
        return self.allows_host(host) and self.allows_port(scheme, port)

    def allows_host(self, host: str | IPAddress) -> bool:
        if self.wildcard:
            return isinstance(host, str) and isinstance(self.host, str) and host.endswith("." + self.host)
        return host == self.host

    def allows_port(self, scheme: str, port: int) -> bool:
        if self.scheme is not None:
            return scheme == self.scheme and port == (self.port or DEFAULT_PORTS[self.scheme])
        if self.port is not None:
            return port == self.port
        return scheme == "https" and port == DEFAULT_PORTS["https"]

    def reach(self) -> str:
        if self.scheme is not None:
            return f"{self.scheme} on port {self.port or DEFAULT_PORTS[self.scheme]}"
        if self.port is not None:
            return f"http or https on port {self.port}"
        return "https on port 443"


@dataclass(frozen=True)
class Target:
    """A checked URL: where it goes, and the name to present as Host and SNI."""

    url: httpx.URL
    scheme: str
    host: str | IPAddress
    port: int

    @property
    def is_ip(self) -> bool:
        return not isinstance(self.host, str)

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if isinstance(self.host, ipaddress.IPv6Address) else str(self.host)
        return name if self.port == DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, str(self.host), self.port)


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Every spelling inet_aton accepts (127.1, 0x7f.1, 017700000001, 2130706433), else None."""
    parts = text.lower().split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.match(p) for p in parts):
        return None
    try:
        values = [int(p, 16) if p.startswith("0x") else int(p, 8) if p[:1] == "0" else int(p) for p in parts]
    except ValueError:  # "0x" alone, or 8/9 in an octal part
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def normalise_host(raw: str) -> str | IPAddress:
    """The canonical form of a host (name or address); ValueError says why it is not one."""
    host = raw.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        if "%" in host:
            raise ValueError(f"host {raw!r}: IPv6 zone identifiers are refused")
        return ipaddress.IPv6Address(host)  # ValueError if malformed
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if _NUMBER.match(labels[-1]):  # a host ending in a number is an IPv4 address or nothing
        address = parse_ipv4(host)
        if address is None:
            raise ValueError(f"host {raw!r} is neither a name nor an IPv4 address")
        return address
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as err:
            raise ValueError(f"host {raw!r} is not a valid internationalised name: {err}") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"host {raw!r} is not a valid host name")
    return host


def parse_entry(text: str) -> Entry:
    """One allowedHosts entry; ValueError if it is not `[scheme://]host[:port]`."""
    raw = text.strip().lower()
    match = _ENTRY.match(raw)
    if match is None and ":" in raw and "://" not in raw:  # a bare IPv6 address, no port
        match = _ENTRY.match(f"[{raw}]")
    if match is None:
        raise ValueError(f"allow-list entry {text!r} is not [scheme://]host[:port]")
    scheme, host, port_text = match.group("scheme"), match.group("host"), match.group("port")
    if scheme is not None and scheme not in DEFAULT_PORTS:
        raise ValueError(f"allow-list entry {text!r}: scheme must be http or https")
    port = int(port_text) if port_text else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"allow-list entry {text!r}: port out of range")
    wildcard = host.startswith("*.")
    name = normalise_host(host[2:] if wildcard else host)
    if wildcard and not isinstance(name, str):
        raise ValueError(f"allow-list entry {text!r}: a wildcard needs a domain")
    return Entry(text.strip(), scheme, name, wildcard, port)


def parse_entries(texts: Iterable[str]) -> list[Entry]:
    """The valid entries (the CRD validates them; anything else allows nothing)."""
    entries: list[Entry] = []
    for text in texts:
        try:
            entries.append(parse_entry(text))
        except ValueError:
            continue
    return entries


def check_url(raw: str, allowed: Iterable[str]) -> Target:
    """The target of a URL the allow-list admits, or Refused with the rule that refused it."""
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, TypeError, ValueError) as err:
        raise Refused(f"invalid URL {raw!r}: {err}") from None
    if url.scheme not in DEFAULT_PORTS:
        raise Refused(f"scheme {url.scheme!r} refused: only http and https")
    if url.userinfo:
        raise Refused(f"URL {raw!r} carries userinfo (user:password@): credentials in URLs are refused")
    if not url.raw_host:
        raise Refused(f"URL {raw!r} has no host")
    try:
        host = normalise_host(url.raw_host.decode("ascii"))
    except ValueError as err:
        raise Refused(str(err)) from None
    port = url.port or DEFAULT_PORTS[url.scheme]
    entries = parse_entries(allowed)
    if any(e.allows(url.scheme, host, port) for e in entries):
        return Target(url, url.scheme, host, port)
    listed = ", ".join(e.text for e in entries) or "none"
    for entry in entries:
        if entry.allows_host(host):
            target = Target(url, url.scheme, host, port)
            named = target.host_header.rsplit(":", 1)[0] if port != DEFAULT_PORTS[url.scheme] else ""
            widen = f"{url.scheme}://{target.host_header}" if not named else f"{named}:{port}"
            raise Refused(
                f"{url.scheme}://{target.host_header} is {RULE}: entry {entry.text!r} allows "
                f"{entry.reach()} only (an entry must widen explicitly, e.g. {widen!r})"
            )
    raise Refused(f"host {str(host)!r} is {RULE} (allowed: {listed})")


def check_addresses(target: Target, addresses: list[IPAddress], allowed: Iterable[str]) -> None:
    """Refused unless every address is public or named, with this scheme and port, by an entry."""
    if not addresses:
        raise Refused(f"host {str(target.host)!r} resolved to no address")
    entries = [e for e in parse_entries(allowed) if not isinstance(e.host, str)]
    for ip in addresses:
        problem = address_problem(ip)
        if problem is None or any(e.allows(target.scheme, ip, target.port) for e in entries):
            continue
        via = "" if target.is_ip else f"host {str(target.host)!r} resolves to "
        raise Refused(
            f"{via}{ip}, {problem}: refused (an http.allowedHosts entry must name {ip} to allow it)"
        )


def check_headers(headers: Mapping[str, object]) -> None:
    """Refused if the model set a header the tool owns (Host, hop-by-hop, proxy, forwarding)."""
    for name, value in headers.items():
        lower = str(name).lower()
        if not _TOKEN.match(lower):
            raise Refused(f"header name {name!r} is not a valid HTTP token")
        if lower in REFUSED_HEADERS or lower.startswith(REFUSED_HEADER_PREFIXES):
            raise Refused(
                f"header {name!r} refused: Host, hop-by-hop and proxy/forwarding headers are set by "
                "the tool from the URL, not by the request"
            )
        if any(c in str(value) for c in "\r\n\0"):
            raise Refused(f"header {name!r}: line breaks and NUL are not allowed in a value")


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for host (one lookup; the caller connects to it)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in seen:
            seen.append(ip)
    return seen


async def resolve(
    target: Target, allowed: Iterable[str], resolver: Resolver, seconds: float
) -> list[IPAddress]:
    """The checked addresses to connect to (an IP target is its own address: no lookup)."""
    if isinstance(target.host, str):
        try:
            addresses = await asyncio.wait_for(resolver(target.host, target.port), seconds)
        except (OSError, TimeoutError) as err:
            reason = str(err) or type(err).__name__
            raise ResolveError(f"could not resolve host {target.host!r}: {reason}") from None
    else:
        addresses = [target.host]
    check_addresses(target, addresses, allowed)
    return addresses
