"""MCP tools without a server: risk mapping, naming, allow-lists, results as the model reads them, the
spec's rules, and shell/python turning RED with secrets or network access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_common.models import AgentSpec, McpServerSpec, Risk
from agentry_common.models import Tool as ToolName
from agentry_workspace.claude_cli import tool_permissions
from agentry_workspace.mcp_servers import resolved_values, stdio_parameters
from agentry_workspace.outcome import Outcome, StopReason, termination_message
from agentry_workspace.policy import assess_call, code_is_red, mcp_risk, red_tools
from agentry_workspace.tools import ToolContext, enabled_tools
from agentry_workspace.tools.mcp import McpTool, allowed, model_name, name_problem, render

pytestmark = pytest.mark.unit

STDIO = {"name": "everything", "command": ["mcp-server-everything", "stdio"], "tools": ["echo", "get-*"]}
REMOTE = {"name": "gh", "url": "https://mcp.example.com/mcp", "tools": ["*"]}
SECRET = {"env": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}


def spec(**extra: Any) -> AgentSpec:
    return AgentSpec.model_validate({"instructions": "x", **extra})


def ctx(tmp_path: Path, limit: int = 1000) -> ToolContext:
    return ToolContext(workspace=tmp_path, env={}, timeout=5, max_output=limit)


@pytest.mark.parametrize(
    ("read_only", "destructive", "override", "risk"),
    [
        (True, False, None, Risk.GREEN),
        (None, True, None, Risk.RED),
        (False, False, None, Risk.YELLOW),
        (None, None, None, Risk.YELLOW),  # no annotations: unknown
        (True, True, None, Risk.RED),  # a contradiction counts as destructive
        (True, False, Risk.RED, Risk.RED),  # the Agent's override wins both ways
        (None, True, Risk.GREEN, Risk.GREEN),
    ],
)
def test_risk_from_annotations_unless_overridden(
    read_only: bool | None, destructive: bool | None, override: Risk | None, risk: Risk
) -> None:
    assert mcp_risk(read_only, destructive, override) is risk


def test_names_and_allow_list() -> None:
    server = McpServerSpec.model_validate(STDIO)
    assert model_name("everything", "echo") == "mcp__everything__echo"
    assert allowed(server, "echo") and allowed(server, "get-sum") and not allowed(server, "echo2")
    assert name_problem("everything", "echo") is None
    assert "64" in (name_problem("everything", "x" * 60) or "")
    assert "characters" in (name_problem("everything", "a.b") or "")


def test_results_as_the_model_reads_them() -> None:
    blocks = [
        {"type": "text", "text": "Echo: hi"},
        {"type": "image", "data": "QUJD", "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "alpha"}},
        {"type": "resource_link", "uri": "file:///b", "name": "b"},
    ]
    text, cut = render(blocks, None, 1000)
    assert text.splitlines() == [
        "Echo: hi",
        "[image image/png, 4 base64 bytes]",
        "[resource file:///a.txt]",
        "alpha",
        "[resource link file:///b: b]",
    ]
    assert cut == 0
    assert render([], {"temperature": 21}, 1000)[0] == '{"temperature": 21}'
    long, cut = render([{"type": "text", "text": "a" * 300 + "b" * 300}], None, 100)
    assert cut == 500 and long.startswith("a" * 50) and long.endswith("b" * 50)


async def test_an_mcp_tool_calls_its_server_and_reports_errors(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any], float]] = []

    async def call(tool: str, args: dict[str, Any], seconds: float) -> tuple[list[dict[str, Any]], Any, bool]:
        seen.append((tool, args, seconds))
        return [{"type": "text", "text": "no such city"}], None, True

    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tool = McpTool("mcp__w__weather", "w", "weather", "Weather now.", schema, Risk.GREEN, call)
    outcome = await tool.run({"city": "Seoul"}, ctx(tmp_path))
    assert seen == [("weather", {"city": "Seoul"}, 5)]
    assert outcome.is_error and outcome.content == "no such city"
    assert outcome.details == {"server": "w", "tool": "weather", "truncatedBytes": 0}
    offered = tool.spec(ctx(tmp_path))
    assert offered.input_schema == schema and offered.description == "[MCP server w] Weather now."
    assert tool.describe({"city": "Seoul"}) == 'w/weather {"city": "Seoul"}'
    assert tool.assess({}, ctx(tmp_path)).risk is Risk.GREEN


def test_shell_and_python_are_red_with_secrets_or_network_access(tmp_path: Path) -> None:
    assert code_is_red(spec(tools=["shell"])) == ""
    assert code_is_red(spec(tools=["shell"], mcpServers=[STDIO])) == ""  # a stdio server is in the sandbox
    assert "spec.secrets" in code_is_red(spec(secrets=[SECRET]))
    provider_key = {**SECRET, "env": "ANTHROPIC_API_KEY"}  # never given to tools: not counted
    assert code_is_red(spec(secrets=[provider_key])) == ""
    assert "http.allowedHosts" in code_is_red(spec(http={"allowedHosts": ["example.com"]}))
    assert "remote MCP server" in code_is_red(spec(mcpServers=[REMOTE]))
    assert code_is_red(spec(secrets=[SECRET], approval={"trustCodeWithAccess": True})) == ""

    held = spec(tools=["shell", "python", "files"], secrets=[SECRET])
    tools = enabled_tools(held)
    for name in ("shell", "python"):
        verdict = assess_call(tools[name], name, {"command": "env", "code": "1"}, held, ctx(tmp_path))
        assert (verdict.action, verdict.risk) == ("approve", Risk.RED)
        assert "trustCodeWithAccess" in verdict.reason
    files = assess_call(tools["files"], "files", {"operation": "list", "path": "."}, held, ctx(tmp_path))
    assert files.action == "run"  # only code is raised
    trusted = spec(tools=["shell"], secrets=[SECRET], approval={"trustCodeWithAccess": True})
    verdict = assess_call(
        enabled_tools(trusted)["shell"], "shell", {"command": "env"}, trusted, ctx(tmp_path)
    )
    assert (verdict.action, verdict.risk) == ("run", Risk.YELLOW)

    # claude-code cannot pause for approval: Bash is not allowed at all there.
    cli = spec(runtime="claude-code", tools=["shell", "files"], secrets=[SECRET])
    assert red_tools(cli) == [ToolName.SHELL]
    allowed_tools, disallowed = tool_permissions(cli.tools, red_tools(cli), [])
    assert "Bash" in disallowed and "Bash" not in allowed_tools


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"mcpServers": [{"name": "a", "tools": ["*"]}]}, "exactly one of url and command"),
        ({"mcpServers": [{**REMOTE, "command": ["x"]}]}, "exactly one of url and command"),
        ({"mcpServers": [{**STDIO, "headers": [{"name": "A", "value": "b"}]}]}, "are for a url server"),
        ({"mcpServers": [{**STDIO, "transport": "SSE"}]}, "are for a url server"),
        ({"mcpServers": [{**REMOTE, "env": [{"name": "A", "value": "b"}]}]}, "env is for a command"),
        ({"mcpServers": [STDIO, STDIO]}, "names must not repeat"),
        ({"mcpServers": [STDIO], "runtime": "claude-code"}, "only runtime agentry"),
        ({"mcpServers": [{**STDIO, "tools": []}]}, "at least 1 item"),
        ({"mcpServers": [{**STDIO, "name": "Bad_Name"}]}, "should match pattern"),
        ({"mcpServers": [{**STDIO, "env": [{"name": "A"}]}]}, "exactly one of value and secretEnv"),
        (
            {
                "mcpServers": [
                    {**REMOTE, "headers": [{"name": "X-Key", "value": "sk-ant-api03-abcdefghijklmnopqrst"}]}
                ]
            },
            "looks like an API key",
        ),
    ],
)
def test_spec_rules(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(**extra)


def test_values_from_secrets_and_stdio_parameters(tmp_path: Path) -> None:
    server = McpServerSpec.model_validate(
        {
            **STDIO,
            "env": [{"name": "A", "value": "1"}, {"name": "AUTH", "secretEnv": "TOKEN", "prefix": "t "}],
        }
    )
    env = {"TOKEN": "s3cret", "ANTHROPIC_API_KEY": "sk-ant-x"}
    params = stdio_parameters(server, env, str(tmp_path))
    assert (params.command, params.args, params.cwd) == ("mcp-server-everything", ["stdio"], str(tmp_path))
    assert params.env == {"A": "1", "AUTH": "t s3cret"}  # only its own: no provider key
    with pytest.raises(ValueError, match="secretEnv TOKEN is not set"):
        resolved_values(server.env, {})


def test_the_result_carries_what_the_servers_offered() -> None:
    mcp = [
        {"name": "everything", "tools": {"echo": "GREEN"}},
        {"name": "gh", "error": "ConnectError: refused"},
    ]
    outcome = Outcome(StopReason.END_TURN, "x" * 10_000, usage={"inputTokens": 1}, mcp=mcp)
    message = termination_message(outcome)
    assert len(message.encode()) <= 4096
    assert json.loads(message)["mcp"] == mcp  # the summary is cut, not the report
    assert "mcp" not in Outcome(StopReason.END_TURN, "x").full()
