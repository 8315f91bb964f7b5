"""The http tool behind the egress proxy (AGENTRY_EGRESS_PROXY): its own checks still run first, then
the request goes through the proxy by name. The proxy here is a real HTTP server on loopback that
answers forward-proxy requests itself and records them."""

from __future__ import annotations

import http.server
import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from agentry_common.constants import ENV_EGRESS_PROXY
from agentry_workspace.tools.base import ToolContext
from agentry_workspace.tools.http import HttpTool
from agentry_workspace.tools.netpolicy import IPAddress

pytestmark = pytest.mark.unit

HOSTS = ("http://api.example.test", "http://inside.example.test")


class Proxy:
    def __init__(self) -> None:
        self.lines: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.lines.append(f"{self.command} {self.path} host={self.headers.get('Host')}")
                body = b"through-the-proxy"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    yield p
    p.server.shutdown()
    p.server.server_close()


async def public_or_private(host: str, port: int) -> list[IPAddress]:
    # api.example.test is public; inside.example.test points into a private range (DNS rebinding).
    return [ipaddress.ip_address("93.184.215.14" if host.startswith("api.") else "10.1.2.3")]


def ctx(tmp_path: Any) -> ToolContext:
    return ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=1000, allowed_hosts=HOSTS)


async def test_an_allowed_request_goes_through_the_proxy_by_name(tmp_path: Any, proxy: Proxy) -> None:
    tool = HttpTool(resolver=public_or_private, proxy=proxy.url)
    out = await tool.run({"url": "http://api.example.test/v1?q=1"}, ctx(tmp_path))
    assert not out.is_error, out.content
    assert "through-the-proxy" in out.content
    # A forward-proxy request: the absolute URL with the name (the proxy resolves it), not an address.
    assert proxy.lines == ["GET http://api.example.test/v1?q=1 host=api.example.test"]


async def test_the_tools_own_checks_still_come_first(tmp_path: Any, proxy: Proxy) -> None:
    tool = HttpTool(resolver=public_or_private, proxy=proxy.url)
    off_list = await tool.run({"url": "http://elsewhere.example.test/"}, ctx(tmp_path))
    rebinding = await tool.run({"url": "http://inside.example.test/"}, ctx(tmp_path))
    assert off_list.is_error and "not in the agent's http.allowedHosts" in off_list.content
    assert rebinding.is_error and "10.1.2.3, a private address" in rebinding.content
    assert proxy.lines == []  # neither reached the proxy


def test_the_proxy_comes_from_the_pod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_EGRESS_PROXY, "http://agentry-egress.agentry-system.svc:3128")
    assert HttpTool()._proxy == "http://agentry-egress.agentry-system.svc:3128"
    monkeypatch.setenv(ENV_EGRESS_PROXY, "")
    assert HttpTool()._proxy is None
