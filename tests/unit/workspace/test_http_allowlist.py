"""The http tool's allow-list as it is meant: entries, normalisation, address rules, headers."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest

from agentry_workspace.tools.base import ToolContext
from agentry_workspace.tools.http import HttpTool, check_request, check_url, pinned_request
from agentry_workspace.tools.netpolicy import (
    IPAddress,
    Refused,
    ResolveError,
    address_problem,
    check_addresses,
    check_headers,
    normalise_host,
    parse_entry,
    parse_ipv4,
    resolve,
)
from agentry_workspace.tools.netpolicy import check_url as check_target

pytestmark = pytest.mark.unit

HOSTS = (
    "api.example.com",
    "*.corp.example",
    "http://plain.example",
    "wide.example:8443",
    "https://tls.example:9443",
    "127.0.0.1:8080",
    "[::1]:9000",
    "10.0.0.5",
    "xn--bcher-kva.example",
)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        # an entry without scheme or port: https on 443 only
        ("https://api.example.com/v1", True),
        ("https://api.example.com:443/v1", True),
        ("HTTPS://API.EXAMPLE.COM./v1", True),
        ("http://api.example.com/", False),
        ("http://api.example.com:443/", False),
        ("https://api.example.com:8443/", False),
        ("http://api.example.com:9999/", False),
        # wildcards: subdomains only
        ("https://x.corp.example/", True),
        ("https://a.b.corp.example/", True),
        ("https://corp.example/", False),
        ("https://notcorp.example/", False),
        ("http://x.corp.example/", False),
        # explicit scheme: its default port only
        ("http://plain.example/", True),
        ("http://plain.example:80/", True),
        ("https://plain.example/", False),
        ("http://plain.example:8080/", False),
        # explicit port: that port, either scheme
        ("https://wide.example:8443/", True),
        ("http://wide.example:8443/", True),
        ("https://wide.example/", False),
        # explicit scheme and port
        ("https://tls.example:9443/", True),
        ("http://tls.example:9443/", False),
        # IP entries, and every IPv4 spelling of the same address
        ("http://127.0.0.1:8080/x", True),
        ("https://127.0.0.1:8080/x", True),
        ("http://127.0.0.1:8081/x", False),
        ("http://127.1:8080/", True),
        ("http://0x7f.1:8080/", True),
        ("http://0x7f000001:8080/", True),
        ("http://2130706433:8080/", True),
        ("http://017700000001:8080/", True),
        ("http://0x7f.0.0.1:8080/", True),
        ("http://127.0.0.1.:8080/", True),
        ("http://[::1]:9000/", True),
        ("http://[0:0:0:0:0:0:0:1]:9000/", True),
        ("http://[::ffff:127.0.0.1]:8080/", False),  # a different address, not a spelling
        ("https://10.0.0.5/", True),
        ("https://0xa.0.0.5/", True),
        ("https://10.5/", True),  # inet_aton reads 10.5 as 10.0.0.5
        ("https://10.0.0.6/", False),
        # IDNA: the entry is in punycode, the URL in Unicode (and upper case)
        ("https://bücher.example/", True),
        ("https://BÜCHER.example/", True),
        ("https://xn--bcher-kva.example/", True),
        ("https://bucher.example/", False),
        # look-alikes and tricks
        ("https://evil.example.com/", False),
        ("https://api.example.com.evil.net/", False),
        ("https://api.example.com@evil.net/", False),
        ("https://evil.net#@api.example.com/", False),
        ("https://evil.net\\@api.example.com/", False),
    ],
)
def test_allow_list_matching(url: str, allowed: bool) -> None:
    assert (check_url(url, HOSTS) is None) is allowed, check_url(url, HOSTS)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "scheme 'file' refused"),
        ("ftp://api.example.com/", "scheme 'ftp' refused"),
        ("gopher://api.example.com/", "scheme 'gopher' refused"),
        ("https://user:pw@api.example.com/", "credentials in URLs are refused"),
        ("https://user@api.example.com/", "credentials in URLs are refused"),
        ("https://:@api.example.com/", "credentials in URLs are refused"),
        ("http://0177.0.0.1:8080/", "Invalid IPv4 address"),  # httpx refuses zero-padded quads
        ("https://%31%32%37.0.0.1/", "neither a name nor an IPv4 address"),
        ("https://1.2.3.4.5/", "neither a name nor an IPv4 address"),
        ("https://256.1.1.1/", "Invalid IPv4 address"),
        ("https://0x100.1.1.1/", "neither a name nor an IPv4 address"),
        ("https://08.1/", "neither a name nor an IPv4 address"),
        ("https://foo.123/", "neither a name nor an IPv4 address"),
        ("https://a_b!.example/", "not a valid host name"),
        ("https://[fe80::1%25eth0]/", "zone identifiers are refused"),
        ("https:///path", "has no host"),
        ("http://api.example.com/", "allows https on port 443 only"),
        ("https://api.example.com:8443/", "e.g. 'api.example.com:8443'"),
        ("http://api.example.com/", "e.g. 'http://api.example.com'"),
        ("https://plain.example/", "entry 'http://plain.example' allows http on port 80 only"),
        ("https://evil.example/", "host 'evil.example' is not in the agent's http.allowedHosts"),
    ],
)
def test_refusals_say_which_rule(url: str, reason: str) -> None:
    refusal = check_url(url, HOSTS)
    assert refusal is not None and reason in refusal, refusal


def test_nothing_is_allowed_by_an_empty_list() -> None:
    assert "(allowed: none)" in (check_url("https://x.io", ()) or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("4294967295", "255.255.255.255"),
    ],
)
def test_ipv4_spellings(text: str, expected: str) -> None:
    assert parse_ipv4(text) == ip(expected)
    assert normalise_host(text) == ip(expected)


@pytest.mark.parametrize(
    "text", ["4294967296", "1.2.3.256", "1.2.65536", "0x", "09", "1..2", "1.2.3.4.5", "a.1"]
)
def test_not_ipv4(text: str) -> None:
    assert parse_ipv4(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("API.Example.COM.", "api.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.EXAMPLE", "xn--bcher-kva.example"),
        ("[::1]", ip("::1")),
        ("::FFFF:7F00:1", ip("::ffff:127.0.0.1")),
        ("_svc.example", "_svc.example"),
    ],
)
def test_host_normalisation(text: str, expected: object) -> None:
    assert normalise_host(text) == expected


@pytest.mark.parametrize("text", ["a..b", "-a.example", "a b", "fe80::1%eth0", "x" * 64 + ".example", ""])
def test_invalid_hosts(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_host(text)


@pytest.mark.parametrize(
    ("text", "scheme", "host", "wildcard", "port"),
    [
        ("api.example.com", None, "api.example.com", False, None),
        ("API.example.com:8443", None, "api.example.com", False, 8443),
        ("http://api.example.com", "http", "api.example.com", False, None),
        ("HTTPS://api.example.com:9443", "https", "api.example.com", False, 9443),
        ("*.corp.example", None, "corp.example", True, None),
        ("http://*.corp.example:8080", "http", "corp.example", True, 8080),
        ("10.0.0.5", None, ip("10.0.0.5"), False, None),
        ("[fd00::5]:8080", None, ip("fd00::5"), False, 8080),
        ("fd00::5", None, ip("fd00::5"), False, None),
    ],
)
def test_entries(text: str, scheme: str | None, host: object, wildcard: bool, port: int | None) -> None:
    entry = parse_entry(text)
    assert (entry.scheme, entry.host, entry.wildcard, entry.port) == (scheme, host, wildcard, port)


@pytest.mark.parametrize(
    "text",
    ["ftp://a.example", "a.example:0", "a.example:70000", "a.example/path", "u@a.example", "*.10.0.0.1", "*"],
)
def test_invalid_entries_allow_nothing(text: str) -> None:
    with pytest.raises(ValueError):
        parse_entry(text)
    assert check_url("https://a.example/", (text,)) is not None


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("fec0::1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "private"),
        ("100.64.0.1", "non-global"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("2002:7f00:1::1", "6to4"),
        ("2002:808:808::1", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("64:ff9b::7f00:1", "NAT64"),
        ("64:ff9b::a9fe:a9fe", "NAT64"),
        ("::7f00:1", "reserved"),  # IPv4-compatible
        ("2001:db8::1", "private"),
    ],
)
def test_forbidden_addresses(address: str, problem: str) -> None:
    found = address_problem(ip(address))
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808", "93.184.215.14"]
)
def test_public_addresses(address: str) -> None:
    assert address_problem(ip(address)) is None


@pytest.mark.parametrize(
    ("url", "addresses", "refused"),
    [
        ("https://api.example.com/", ["93.184.215.14"], None),
        ("https://api.example.com/", ["127.0.0.1"], "resolves to 127.0.0.1, a loopback address"),
        ("https://api.example.com/", ["93.184.215.14", "10.0.0.9"], "10.0.0.9, a private address"),
        ("https://api.example.com/", ["169.254.169.254"], "the cloud metadata server"),
        ("https://api.example.com/", ["::ffff:10.0.0.1"], "IPv4-mapped"),
        ("https://api.example.com/", ["10.0.0.5"], None),  # entry "10.0.0.5" names it (https/443)
        ("https://x.corp.example/", ["10.0.0.5"], None),
        ("http://plain.example/", ["10.0.0.5"], "10.0.0.5, a private address"),  # not for http/80
        ("http://127.0.0.1:8080/", ["127.0.0.1"], None),
        ("http://0x7f.1:8080/", ["127.0.0.1"], None),
        ("http://[::1]:9000/", ["::1"], None),
        ("https://api.example.com/", [], "resolved to no address"),
    ],
)
def test_resolved_addresses_are_checked(url: str, addresses: list[str], refused: str | None) -> None:
    target = check_target(url, HOSTS)
    if refused is None:
        check_addresses(target, [ip(a) for a in addresses], HOSTS)
        return
    with pytest.raises(Refused, match=refused.replace("(", r"\(")):
        check_addresses(target, [ip(a) for a in addresses], HOSTS)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Accept": "application/json", "Authorization": "Bearer x", "X-Api-Key": "k"}, None),
        ({"Host": "internal.example"}, "'Host' refused"),
        ({"HOST": "internal.example"}, "'HOST' refused"),
        ({"Connection": "close"}, "refused"),
        ({"Keep-Alive": "timeout=5"}, "refused"),
        ({"TE": "trailers"}, "refused"),
        ({"Trailer": "x"}, "refused"),
        ({"Transfer-Encoding": "chunked"}, "refused"),
        ({"Upgrade": "websocket"}, "refused"),
        ({"Content-Length": "0"}, "refused"),
        ({"Proxy-Authorization": "Basic eA=="}, "refused"),
        ({"Proxy-Connection": "keep-alive"}, "refused"),
        ({"Forwarded": "host=internal"}, "refused"),
        ({"Via": "1.1 proxy"}, "refused"),
        ({"X-Forwarded-Host": "internal"}, "refused"),
        ({"X-Forwarded-For": "127.0.0.1"}, "refused"),
        ({"X-Real-IP": "127.0.0.1"}, "refused"),
        ({"X-Original-URL": "/admin"}, "refused"),
        ({"X-Rewrite-URL": "/admin"}, "refused"),
        ({"X-HTTP-Host-Override": "internal"}, "refused"),
        ({":authority": "internal"}, "not a valid HTTP token"),
        ({"Bad Name": "x"}, "not a valid HTTP token"),
        ({"X-Ok": "a\r\nHost: internal"}, "line breaks"),
    ],
)
def test_headers(headers: dict[str, str], refused: str | None) -> None:
    args: dict[str, Any] = {"url": "https://api.example.com/", "headers": headers}
    if refused is None:
        check_headers(headers)
        assert check_request(args, HOSTS) is None
        return
    with pytest.raises(Refused, match=refused):
        check_headers(headers)
    assert refused in (check_request(args, HOSTS) or "")


def test_assess_refuses_a_host_header_before_anything_runs(tmp_path: Any) -> None:
    ctx = ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=1000, allowed_hosts=HOSTS)
    tool = HttpTool()
    bad = {"url": "https://api.example.com/", "headers": {"Host": "metadata.google.internal"}}
    assert "'Host' refused" in (tool.assess(bad, ctx).refusal or "")
    assert tool.assess({"url": "https://api.example.com/"}, ctx).refusal is None
    assert "allows https on port 443 only" in (
        tool.assess({"url": "http://api.example.com/"}, ctx).refusal or ""
    )


@pytest.mark.parametrize(
    ("url", "address", "connect_url", "host", "sni"),
    [
        (
            "https://api.example.com/v1?q=1",
            "93.184.215.14",
            "https://93.184.215.14/v1?q=1",
            "api.example.com",
            True,
        ),
        (
            "https://wide.example:8443/",
            "2606:4700::1",
            "https://[2606:4700::1]:8443/",
            "wide.example:8443",
            True,
        ),
        ("https://bücher.example/", "93.184.215.14", "https://93.184.215.14/", "xn--bcher-kva.example", True),
        ("http://0x7f.1:8080/a", "127.0.0.1", "http://127.0.0.1:8080/a", "127.0.0.1:8080", False),
        ("http://[::1]:9000/", "::1", "http://[::1]:9000/", "[::1]:9000", False),
    ],
)
def test_the_request_goes_to_the_checked_address_and_names_the_host(
    url: str, address: str, connect_url: str, host: str, sni: bool
) -> None:
    target = check_target(url, HOSTS)
    client = httpx.AsyncClient()
    request = pinned_request(client, "GET", target, ip(address), {"Accept": "x"}, None)
    assert str(request.url) == connect_url
    assert request.headers["host"] == host and request.headers["accept"] == "x"
    assert request.extensions.get("sni_hostname") == (host.split(":")[0] if sni else None)


async def test_resolution_is_checked_and_a_literal_needs_no_lookup() -> None:
    looked_up: list[tuple[str, int]] = []

    async def fake(host: str, port: int) -> list[IPAddress]:
        looked_up.append((host, port))
        return {"api.example.com": [ip("127.0.0.1")], "x.corp.example": [ip("8.8.8.8")]}[host]

    with pytest.raises(Refused, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        await resolve(check_target("https://api.example.com/", HOSTS), HOSTS, fake, 1)
    assert await resolve(check_target("https://x.corp.example/", HOSTS), HOSTS, fake, 1) == [ip("8.8.8.8")]
    assert await resolve(check_target("http://127.1:8080/", HOSTS), HOSTS, fake, 1) == [ip("127.0.0.1")]
    assert looked_up == [("api.example.com", 443), ("x.corp.example", 443)]

    async def failing(host: str, port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    with pytest.raises(ResolveError, match=r"could not resolve host 'api\.example\.com'"):
        await resolve(check_target("https://api.example.com/", HOSTS), HOSTS, failing, 1)


async def test_run_refuses_a_name_resolving_to_metadata_without_connecting(tmp_path: Any) -> None:
    async def metadata(host: str, port: int) -> list[IPAddress]:
        return [ip("169.254.169.254")]

    ctx = ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=1000, allowed_hosts=HOSTS)
    out = await HttpTool(resolver=metadata).run({"url": "https://api.example.com/latest/meta-data"}, ctx)
    assert out.is_error and out.details["refused"] is True
    assert "169.254.169.254, the cloud metadata server" in out.content
