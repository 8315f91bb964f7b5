"""The runtime starts without the MCP SDK (about a second of imports) unless a run has MCP servers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import sys
import agentry_workspace.app, agentry_workspace.runner, agentry_workspace.mcp_servers
print(sorted(m for m in sys.modules if m.split(".")[0] in ("mcp", "mcp_types", "httpx2")))
"""


def test_the_runtime_imports_no_mcp_sdk_until_a_server_connects() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_plain_http_gateway_costs_no_ca_bundle_load(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    """A run's model client and checkpoint client in the cluster speak plain http to the gateway:
    loading the CA bundle (tens of milliseconds) would only slow the run's start."""
    import ssl

    from agentry_llm.anthropic_provider import AnthropicProvider
    from agentry_workspace.checkpoints import GatewayStore

    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def load(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", load)
    AnthropicProvider(model="claude-sonnet-4-6", api_key="k", base_url=f"{scheme}://gateway:8080")
    GatewayStore(f"{scheme}://gateway:8080", "token")
    assert len(loads) == (0 if scheme == "http" else 2)
