"""Egress from any tool obeys the Agent's allow-list: a real run pod's shell reaches an allowed host
through the egress proxy (squid + the allow-list helper), is refused another host by the proxy, and
cannot go around the proxy (the runs' NetworkPolicy, enforced by the node's kube-router).

The "internet" here is two HTTP servers on the node's address (the install lets the proxy reach that
one private address; docs/security.md, "Egress")."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentry_localcluster import node as n
from agentry_localcluster.install import SYSTEM_NS
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

PROXY = f"http://agentry-egress.{SYSTEM_NS}.svc:3128"
# What the shell tool runs: the same URL fetched through the proxy and directly, and another host
# through the proxy; one line per attempt, `<label>: <body or error>`.
FETCH = """
import sys, urllib.request, urllib.error
def fetch(label, url, proxy):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
    try:
        print(label + ": " + opener.open(url, timeout=8).read().decode())
    except urllib.error.HTTPError as exc:
        print(label + ": HTTP " + str(exc.code))
    except OSError as exc:
        print(label + ": blocked " + type(exc).__name__)
allowed, other, proxy = sys.argv[1:4]
fetch("allowed-via-proxy", allowed, proxy)
fetch("other-via-proxy", other, proxy)
fetch("allowed-direct", allowed, "")
"""


@dataclass
class Site:
    """An HTTP server on the node's address answering its name; counts the requests it got."""

    name: str
    hits: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Site:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.client_address[0])
                body = f"{site.name}-ok".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((n.NODE_IP, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{n.NODE_IP}:{self.server.server_address[1]}/"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def _apply_agent(stack: NodeStack, name: str, spec: dict[str, Any], timeout: float = 60) -> None:
    """Apply once the operator's admission webhook answers: this may be the package's first test,
    started right after the install (the webhook's Service can refuse for a moment)."""
    deadline = time.monotonic() + patient(timeout)
    while True:
        try:
            stack.apply_agent(name, spec)
            return
        except AssertionError as exc:
            if "failed calling webhook" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture
def sites(node_stack: NodeStack) -> Iterator[tuple[Site, Site]]:
    allowed, other = Site("allowed").start(), Site("other").start()
    try:
        yield allowed, other
    finally:
        allowed.stop()
        other.stop()


def test_shell_egress_goes_only_to_the_allow_list(
    node_stack: NodeStack, llm: ScriptedLLM, sites: tuple[Site, Site]
) -> None:
    allowed, other = sites
    command = f"python -c '{FETCH}' {allowed.url} {other.url} {PROXY}"
    llm.script(
        [
            {"tool_use": {"name": "shell", "input": {"command": command}}},
            {"text": "Fetched."},
        ]
    )
    agent = unique("egress")
    # Shell with network access is RED (it could send secrets out); this Agent holds none: no approval.
    spec = agent_spec(
        http={"allowedHosts": [allowed.url.rstrip("/")]}, approval={"trustCodeWithAccess": True}
    )
    _apply_agent(node_stack, agent, spec)
    execution = node_stack.run(agent, "Fetch the pages.")
    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"))["status"]
    assert status["phase"] == "Succeeded", status

    result = str(llm.requests[1].body["messages"][-1])
    # Through the proxy to the allow-listed host: its page.
    assert "allowed-via-proxy: allowed-ok" in result, result
    # Another host through the proxy: squid's 403, and the host never saw a request.
    assert "other-via-proxy: HTTP 403" in result, result
    assert other.hits == []
    # Around the proxy, even to the allowed host: the runs' NetworkPolicy refuses it.
    assert "allowed-direct: blocked" in result, result
    # The one request the allowed host got came from the proxy's pod, not from the run's.
    assert len(allowed.hits) == 1, allowed.hits
    proxy_pods = node_stack.cluster.plane.kubectl(
        "-n", SYSTEM_NS, "get", "pods", "-l", "app.kubernetes.io/component=egress",
        "-o", "jsonpath={.items[*].status.podIP}",
    ).stdout.split()  # fmt: skip
    assert allowed.hits[0] in proxy_pods, (allowed.hits, proxy_pods)
