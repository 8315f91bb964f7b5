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
