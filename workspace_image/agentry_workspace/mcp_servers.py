"""The run's MCP servers (spec.mcpServers), connected with the official `mcp` SDK at run start.

Discovery happens here, in the run, not in the operator: a stdio server exists only in the image and
the sandbox, a remote one must be reached under the run's own network rules (the pod's NetworkPolicy,
http.allowedHosts), and its credentials are the run's secrets. The operator records what the run found.

* stdio (`command`): started in the workspace like a shell tool (own session, no provider key or run
  token: its environment is the SDK's minimal one (PATH, HOME, ...) plus the server's `env`).
* remote (`url`): the URL must pass the http tool's allow-list and address rules (tools/netpolicy)
  before connecting; headers come from the server's `headers`.

A server that cannot be reached is reported (event `mcp_servers`, the result's `mcp`) and its tools are
not offered; the run goes on with the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from agentry_common import constants as c
from agentry_common.models import AgentSpec, McpServerSpec, McpTransport, McpValue

from .events import EventSink
from .policy import mcp_risk
from .tools.base import one_line
from .tools.mcp import McpTool, allowed, model_name, name_problem
from .tools.netpolicy import (
    Refused,
    ResolveError,
    Resolver,
    check_headers,
    check_url,
    resolve,
    system_resolver,
)

# The SDK costs about a second of CPU to import: it is loaded in the functions that connect, so a run
# without MCP servers (most of them) starts without it.
if TYPE_CHECKING:
    import httpx2
    from mcp import Client, StdioServerParameters

CONNECT_SECONDS = 30.0
MAX_REPORTED_TOOLS = 64  # per server, in the result (the termination message holds 4 KiB)


def resolved_values(values: list[McpValue], env: Mapping[str, str]) -> dict[str, str]:
    """Headers or variables with their values; a secretEnv missing from the run's environment is an
    error naming it."""
    out: dict[str, str] = {}
    for v in values:
        if v.secret_env is not None:
            if v.secret_env not in env:
                raise ValueError(f"{v.name}: secretEnv {v.secret_env} is not set in the run's environment")
            out[v.name] = v.prefix + env[v.secret_env]
        else:
            out[v.name] = v.prefix + (v.value or "")
    return out


def stdio_parameters(server: McpServerSpec, env: Mapping[str, str], workspace: str) -> StdioServerParameters:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=server.command[0],
        args=server.command[1:],
        env=resolved_values(server.env, env),
        cwd=workspace,
    )


async def checked_url(url: str, allowed_hosts: tuple[str, ...], resolver: Resolver) -> str:
    """The URL if the agent's network rules admit it (allow-list, then the resolved addresses)."""
    target = check_url(url, allowed_hosts)
    await resolve(target, allowed_hosts, resolver, 10.0)
    return url


def http_client_factory(proxy: str | None) -> Any:
    """The MCP SDK's client factory with its timeouts (a response stream may stay open for minutes),
    an explicit proxy and no environment proxies."""
    import httpx2

    def make(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            auth=auth,
            proxy=proxy,
            trust_env=False,
        )

    return make


class McpServers:
    """Connections to every server for the length of a run (one task enters and leaves it)."""

    def __init__(
        self,
        spec: AgentSpec,
        env: Mapping[str, str],
        *,
        workspace: str,
        events: EventSink,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.spec = spec
        self.env = env
        self.workspace = workspace
        self.events = events
        self.resolver = resolver
        self.tools: dict[str, McpTool] = {}
        self.report: list[dict[str, Any]] = []
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> McpServers:
        try:
            for server in self.spec.mcp_servers:
                self.report.append(await self._open(server))
        except BaseException:  # the deadline or SIGTERM while connecting: stop what was started
            await self.__aexit__()
            raise
        if self.report:
            self.events.emit("mcp_servers", servers=self.report)
        return self

    async def _open(self, server: McpServerSpec) -> dict[str, Any]:
        """Connect one server and list its tools; what to report about it."""
        entry: dict[str, Any] = {"name": server.name}
        own = AsyncExitStack()  # this server's connection, closed at once if it fails
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                client = await self._connect(server, own)
                entry["tools"] = await self._discover(server, client)
        except Exception as err:  # any failure of one server: reported, the run goes on
            with contextlib.suppress(Exception):
                await own.aclose()
            self.tools = {k: t for k, t in self.tools.items() if t.server != server.name}
            return {**entry, "error": one_line(f"{type(err).__name__}: {err}", 300)}
        except BaseException:
            await own.aclose()
            raise
        self._stack.push_async_callback(own.aclose)
        return entry

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    async def _connect(self, server: McpServerSpec, stack: AsyncExitStack) -> Client:
        from mcp import Client
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client

        # A secret given to a server is redacted from the run's events like a provider key.
        self._redact(self.env[e] for e in server.secret_envs() if len(self.env.get(e, "")) >= 8)
        if server.command:
            target: Any = stdio_parameters(server, self.env, self.workspace)
        else:
            assert server.url is not None
            url = await checked_url(server.url, tuple(self.spec.http.allowed_hosts), self.resolver)
            headers = resolved_values(server.headers, self.env)
            check_headers(headers)
            # Through the egress proxy when the pod has one (its NetworkPolicy allows nothing else),
            # never through proxies the environment names otherwise.
            factory = http_client_factory(self.env.get(c.ENV_EGRESS_PROXY) or None)
            if server.transport is McpTransport.SSE:
                target = sse_client(url, headers=headers, httpx_client_factory=factory)
            else:
                http = factory(headers=headers)
                await stack.enter_async_context(http)
                target = streamable_http_client(url, http_client=http)
        client = Client(target, read_timeout_seconds=CONNECT_SECONDS)
        return await stack.enter_async_context(client)

    async def _discover(self, server: McpServerSpec, client: Client) -> dict[str, str]:
        """List the server's tools (every page) and keep the allow-listed ones; their risks."""
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if not allowed(server, tool.name) or name_problem(server.name, tool.name):
                    continue
                hints = tool.annotations
                risk = mcp_risk(
                    hints.read_only_hint if hints else None,
                    hints.destructive_hint if hints else None,
                    server.risk.get(tool.name),
                )
                name = model_name(server.name, tool.name)
                self.tools[name] = McpTool(
                    name,
                    server.name,
                    tool.name,
                    tool.description or "",
                    dict(tool.input_schema),
                    risk,
                    _caller(client),
                    repeatable=bool(hints and (hints.idempotent_hint or hints.read_only_hint)),
                )
                if len(found) < MAX_REPORTED_TOOLS:
                    found[tool.name] = risk.value
            cursor = page.next_cursor
            if not cursor:
                return found

    def _redact(self, values: Any) -> None:
        sink = self.events
        sink.bind(correlation_id=sink.correlation_id, execution=sink.execution, secrets=list(values))


def _caller(client: Client) -> Any:
    async def call(tool: str, args: dict[str, Any], seconds: float) -> tuple[list[dict[str, Any]], Any, bool]:
        try:
            result = await client.call_tool(tool, args, read_timeout_seconds=seconds)
        except Exception as err:  # the server's protocol error or a lost connection: the model reads it
            text = f"MCP server error: {type(err).__name__}: {err}"
            print(f"agentry: {text}", file=sys.stderr)
            return [{"type": "text", "text": text}], None, True
        blocks = [b.model_dump(mode="json", by_alias=True) for b in result.content]
        return blocks, result.structured_content, result.is_error

    return call


__all__ = ["McpServers", "Refused", "ResolveError", "resolved_values", "stdio_parameters"]
