"""The http tool against real servers on this machine: loopback, redirects, TLS/SNI, proxies."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentry_common.pki import LocalPKI
from agentry_workspace.tools.base import ToolContext, ToolOutcome
from agentry_workspace.tools.http import MAX_REDIRECTS, HttpTool
from agentry_workspace.tools.netpolicy import IPAddress

pytestmark = pytest.mark.integration

TLS_NAME = "api.agentry.test"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Server:
    """A recording HTTP(S) server on 127.0.0.1; `redirects` maps a path to a Location."""

    httpd: ThreadingHTTPServer
    scheme: str = "http"
    seen: list[Seen] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)
    sni: list[str | None] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    holder: list[Server] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            server = holder[0]
            server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
            location = server.redirects.get(self.path)
            body = b"" if location else b"hello from " + self.path.encode()
            self.send_response(302 if location else 200)
            if location:
                self.send_header("location", location)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd, scheme="https" if tls else "http")
    holder.append(server)
    if tls is not None:

        def record_sni(_sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
            server.sni.append(name)

        tls.sni_callback = record_sni
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPKI:
    return LocalPKI(tmp_path_factory.mktemp("http-pki"))


@pytest.fixture
def tls_server(pki: LocalPKI) -> Iterator[Server]:
    pair = pki.issue("web", TLS_NAME, dns=(TLS_NAME, "localhost"), server=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    with serve(context) as server:
        yield server


def client_tls(pki: LocalPKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca.cert))


async def fake_dns(host: str, port: int) -> list[IPAddress]:
    names = {TLS_NAME: "127.0.0.1", "other.agentry.test": "127.0.0.1", "meta.agentry.test": "169.254.169.254"}
    if host not in names:
        raise OSError(f"{host}: Name or service not known")
    return [ipaddress.ip_address(names[host])]


async def fetch(
    tmp_path: Path, url: str, allowed: tuple[str, ...], tool: HttpTool | None = None, **args: Any
) -> ToolOutcome:
    ctx = ToolContext(workspace=tmp_path, env={}, timeout=10, max_output=10_000, allowed_hosts=allowed)
    tool = tool or HttpTool()
    refusal = tool.assess({"url": url, **args}, ctx).refusal
    if refusal is not None:  # what the runner does before run(): refuse, never call
        return ToolOutcome(f"Refused by policy: {refusal}", True, details={"refused": True})
    return await tool.run({"url": url, **args}, ctx)


# -- loopback is refused unless an entry names it -------------------------------------------------


async def test_a_loopback_server_is_reached_only_when_its_ip_is_listed(tmp_path: Path) -> None:
    with serve() as web:
        out = await fetch(tmp_path, web.url("/a"), ("api.example.com",))
        assert out.is_error and "not in the agent's http.allowedHosts" in out.content
        out = await fetch(tmp_path, web.url("/a"), (f"127.0.0.1:{web.port + 1}",))
        assert out.is_error and "not in the agent's http.allowedHosts" in out.content
        assert web.seen == []

        out = await fetch(tmp_path, web.url("/b"), (web.entry,))
        assert not out.is_error and "hello from /b" in out.content
        # another spelling of the same address is the same address (and is what gets dialled)
        out = await fetch(tmp_path, web.url("/c", host="0x7f.1"), (web.entry,))
        assert not out.is_error and "hello from /c" in out.content
        assert [s.path for s in web.seen] == ["/b", "/c"]
        assert web.seen[1].headers["host"] == web.entry


async def test_a_name_resolving_to_loopback_is_refused(tmp_path: Path) -> None:
    with serve() as web:
        out = await fetch(tmp_path, web.url("/x", host="localhost"), (f"localhost:{web.port}",))
        assert out.is_error and out.details["refused"] is True
        assert "host 'localhost' resolves to 127.0.0.1, a loopback address" in out.content
        assert "must name 127.0.0.1" in out.content
        assert web.seen == []
        # ...until an entry names the address (the address rule is lifted for that IP and port)
        allowed = (f"localhost:{web.port}", web.entry, f"[::1]:{web.port}")
        out = await fetch(tmp_path, web.url("/y", host="localhost"), allowed)
        assert not out.is_error, out.content
        assert web.seen[0].headers["host"] == f"localhost:{web.port}"


async def test_a_name_resolving_to_the_metadata_server_is_refused_before_connecting(tmp_path: Path) -> None:
    out = await fetch(
        tmp_path, "https://meta.agentry.test/latest/", ("meta.agentry.test",), HttpTool(resolver=fake_dns)
    )
    assert out.is_error and "169.254.169.254, the cloud metadata server" in out.content


async def test_a_model_supplied_host_header_is_refused(tmp_path: Path) -> None:
    with serve() as web:
        for header in ({"Host": "internal.example"}, {"X-Forwarded-Host": "x"}, {"Proxy-Authorization": "x"}):
            out = await fetch(tmp_path, web.url(), (web.entry,), headers=header)
            assert out.is_error and "refused" in out.content
            # run() refuses on its own too (no reliance on assess)
            ctx = ToolContext(
                workspace=tmp_path, env={}, timeout=5, max_output=100, allowed_hosts=(web.entry,)
            )
            out = await HttpTool().run({"url": web.url(), "headers": header}, ctx)
            assert out.is_error and out.details["refused"] is True
        assert web.seen == []


# -- redirects are followed by hand and re-checked per hop ---------------------------------------


async def test_a_redirect_to_a_forbidden_address_is_refused_at_the_hop(tmp_path: Path) -> None:
    with serve() as web, serve() as inner:
        web.redirects["/to-inner"] = inner.url("/secret")
        web.redirects["/to-localhost"] = inner.url("/secret", host="localhost")
        web.redirects["/to-metadata"] = "http://169.254.169.254/latest/meta-data/"
        web.redirects["/to-decimal"] = f"http://2130706433:{inner.port}/secret"
        allowed = (web.entry, f"localhost:{inner.port}")
        for path, reason in [
            ("/to-inner", "not in the agent's http.allowedHosts"),
            ("/to-localhost", "resolves to 127.0.0.1, a loopback address"),
            ("/to-metadata", "host '169.254.169.254' is not in the agent's http.allowedHosts"),
            ("/to-decimal", f"http://127.0.0.1:{inner.port} is not in the agent's http.allowedHosts"),
        ]:
            out = await fetch(tmp_path, web.url(path), allowed)
            assert out.is_error and out.details == {"refused": True, "hop": 1}, out.content
            assert "refused: redirect hop 1 to " in out.content and reason in out.content
        assert [s.path for s in web.seen] == ["/to-inner", "/to-localhost", "/to-metadata", "/to-decimal"]
        assert inner.seen == []


async def test_redirects_are_bounded_and_credentials_stay_with_their_origin(tmp_path: Path) -> None:
    with serve() as web, serve() as other:
        web.redirects["/loop"] = "/loop"
        out = await fetch(tmp_path, web.url("/loop"), (web.entry,))
        assert out.is_error and f"too many redirects (more than {MAX_REDIRECTS})" in out.content
        assert len(web.seen) == MAX_REDIRECTS + 1

        web.redirects["/away"] = other.url("/landed")
        headers = {"Authorization": "Bearer s3cret", "X-Trace": "t1"}
        out = await fetch(tmp_path, web.url("/away"), (web.entry, other.entry), headers=headers)
        assert not out.is_error and "hello from /landed" in out.content
        assert web.seen[-1].headers["authorization"] == "Bearer s3cret"
        assert "authorization" not in other.seen[0].headers and other.seen[0].headers["x-trace"] == "t1"


# -- TLS: the connection goes to the checked address, SNI and Host stay the name ------------------


async def test_tls_sends_the_name_as_sni_and_host_to_the_checked_address(
    tmp_path: Path, pki: LocalPKI, tls_server: Server
) -> None:
    tool = HttpTool(resolver=fake_dns, verify=client_tls(pki))
    url = f"https://{TLS_NAME}:{tls_server.port}/hello"
    out = await fetch(tmp_path, url, (f"{TLS_NAME}:{tls_server.port}",), tool)
    assert out.is_error and "resolves to 127.0.0.1, a loopback address" in out.content
    assert tls_server.sni == [] and tls_server.seen == []

    out = await fetch(tmp_path, url, (f"{TLS_NAME}:{tls_server.port}", tls_server.entry), tool)
    assert not out.is_error and "hello from /hello" in out.content, out.content
    assert tls_server.sni == [TLS_NAME]
    assert tls_server.seen[0].headers["host"] == f"{TLS_NAME}:{tls_server.port}"


async def test_tls_certificate_is_checked_against_the_name(
    tmp_path: Path, pki: LocalPKI, tls_server: Server
) -> None:
    tool = HttpTool(resolver=fake_dns, verify=client_tls(pki))
    allowed = (f"other.agentry.test:{tls_server.port}", tls_server.entry)
    out = await fetch(tmp_path, f"https://other.agentry.test:{tls_server.port}/", allowed, tool)
    assert out.is_error and "request failed" in out.content and "CERTIFICATE_VERIFY_FAILED" in out.content
    assert tls_server.sni == ["other.agentry.test"] and tls_server.seen == []


async def test_tls_with_the_system_resolver(tmp_path: Path, pki: LocalPKI, tls_server: Server) -> None:
    tool = HttpTool(verify=client_tls(pki))
    allowed = (f"localhost:{tls_server.port}", tls_server.entry, f"[::1]:{tls_server.port}")
    out = await fetch(tmp_path, f"https://localhost:{tls_server.port}/sys", allowed, tool)
    assert not out.is_error, out.content
    assert (
        tls_server.sni == ["localhost"]
        and tls_server.seen[0].headers["host"] == f"localhost:{tls_server.port}"
    )


# -- the environment does not steer the tool -------------------------------------------------------


@contextmanager
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A socket that records every connection it gets (a proxy that must stay idle)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.05)
    got: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    got.append(conn.recv(4096))
                except OSError:
                    got.append(b"")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1]), got
    finally:
        stop.set()
        thread.join(2)
        sock.close()


async def test_proxy_variables_and_netrc_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: LocalPKI, tls_server: Server
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password hunter2\nmachine localhost login a password b\n")
    netrc.chmod(0o600)
    with listener() as (proxy_port, proxied), serve() as web:
        proxy = f"http://127.0.0.1:{proxy_port}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.setenv("NETRC", str(netrc))
        monkeypatch.setenv("HOME", str(tmp_path))
        (tmp_path / ".netrc").write_text(netrc.read_text())
        (tmp_path / ".netrc").chmod(0o600)

        out = await fetch(tmp_path, web.url("/direct"), (web.entry,))
        assert not out.is_error, out.content
        tool = HttpTool(resolver=fake_dns, verify=client_tls(pki))
        allowed = (f"{TLS_NAME}:{tls_server.port}", tls_server.entry)
        out = await fetch(tmp_path, f"https://{TLS_NAME}:{tls_server.port}/direct", allowed, tool)
        assert not out.is_error, out.content
    assert proxied == []
    assert "authorization" not in web.seen[0].headers
    assert "authorization" not in tls_server.seen[0].headers
