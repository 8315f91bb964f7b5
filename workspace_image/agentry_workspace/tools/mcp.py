"""An MCP server's tool as one of the agent's tools: its name for the model, its schema, its risk, and
how a result is shown to the model. Pure: the connection (agentry_workspace.mcp_servers) is injected
as `call`."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentry_common.models import MCP_SEPARATOR, MCP_TOOL_NAME_MAX, MCP_TOOL_PREFIX, McpServerSpec, Risk
from agentry_llm.types import ToolSpec

from .base import Assessment, ToolContext, ToolOutcome, one_line, truncate_bytes

DESCRIPTION_CHARS = 2048  # of a server's tool description, offered to the model
# One call of an MCP tool: (tool name on the server, arguments, timeout) -> (content blocks as
# dicts, structured content, is_error).
Call = Callable[[str, dict[str, Any], float], Awaitable[tuple[list[dict[str, Any]], Any, bool]]]


def model_name(server: str, tool: str) -> str:
    """The name the model calls: mcp__<server>__<tool>."""
    return f"{MCP_TOOL_PREFIX}{server}{MCP_SEPARATOR}{tool}"


def name_problem(server: str, tool: str) -> str | None:
    """Why a server's tool cannot be offered under its name (None: it can)."""
    name = model_name(server, tool)
    if len(name) > MCP_TOOL_NAME_MAX:
        return f"{name} is longer than the {MCP_TOOL_NAME_MAX} characters model providers accept"
    if not all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in tool):
        return f"tool name {tool!r} has characters model providers refuse (letters, digits, _ and - only)"
    return None


def allowed(spec: McpServerSpec, tool: str) -> bool:
    """Whether the server's allow-list (spec.mcpServers[].tools) admits this tool."""
    return any(fnmatch.fnmatchcase(tool, pattern) for pattern in spec.tools)


def render(blocks: Sequence[Mapping[str, Any]], structured: Any, limit: int) -> tuple[str, int]:
    """What the model reads of a result: text as is, other content named with its size, structured
    content as JSON when there is no text; cut in the middle at `limit` bytes."""
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "resource":
            res = block.get("resource") or {}
            body = res.get("text") if "text" in res else f"[{len(str(res.get('blob', '')))} base64 bytes]"
            parts.append(f"[resource {res.get('uri', '')}]\n{body}")
        elif kind == "resource_link":
            parts.append(f"[resource link {block.get('uri', '')}: {block.get('name', '')}]")
        else:  # image, audio: the model gets a note, not megabytes of base64
            size = len(str(block.get("data", "")))
            parts.append(f"[{kind} {block.get('mimeType', block.get('mime_type', ''))}, {size} base64 bytes]")
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return truncate_bytes("\n".join(parts).encode("utf-8"), limit)


@dataclass
class McpTool:
    """One allow-listed tool of one MCP server."""

    name: str
    server: str
    tool: str
    description: str
    input_schema: dict[str, Any]
    risk: Risk
    call: Call
    # The server's annotations: idempotentHint or readOnlyHint (a read-only tool is idempotent too).
    repeatable: bool = False

    def spec(self, ctx: ToolContext) -> ToolSpec:
        text = f"[MCP server {self.server}] {self.description}".strip()
        return ToolSpec(name=self.name, description=text[:DESCRIPTION_CHARS], input_schema=self.input_schema)

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        return Assessment(self.risk)

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return self.repeatable

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"{self.server}/{self.tool} {one_line(json.dumps(dict(args), ensure_ascii=False))}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        blocks, structured, is_error = await self.call(self.tool, dict(args), ctx.timeout)
        text, cut = render(blocks, structured, ctx.max_output)
        return ToolOutcome(
            text, is_error=is_error, details={"server": self.server, "tool": self.tool, "truncatedBytes": cut}
        )
