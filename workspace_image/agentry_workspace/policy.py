"""Which tool calls run, which wait for a human, which are refused. One place for the rule.

1. Refused outright (the model gets an error result, no approval can override): a tool the agent
   does not have, a path outside the workspace, an http request to a host not in allowedHosts.
2. Otherwise the call has a risk: the tool's own (GREEN read-only, YELLOW changes the sandbox,
   RED changes something outside: http POST/PUT/PATCH/DELETE; an MCP tool's from its server's
   annotations, `mcp_risk`), raised to RED for every tool listed in approval.redTools, and for
   shell and python when the agent also holds secrets or network access (`code_is_red`).
3. A call whose risk is listed in approval.requiredFor (default [RED]) waits for approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agentry_common.models import AgentSpec, Risk
from agentry_common.models import Tool as ToolName

from .events import SECRET_ENV
from .tools import Tool, ToolContext

# Code the model writes: it can read every variable and file of the sandbox and open connections.
CODE_TOOLS = (ToolName.SHELL, ToolName.PYTHON)


@dataclass(frozen=True)
class Verdict:
    action: Literal["run", "refuse", "approve"]
    risk: Risk
    reason: str = ""


def mcp_risk(read_only: bool | None, destructive: bool | None, override: Risk | None = None) -> Risk:
    """An MCP tool's risk: the Agent's override, else from its server's annotations (hints: a server
    the Agent trusts describes itself). Destructive wins over a contradictory read-only claim."""
    if override is not None:
        return override
    if destructive:
        return Risk.RED
    if read_only:
        return Risk.GREEN
    return Risk.YELLOW


def code_is_red(spec: AgentSpec) -> str:
    """Why shell and python are RED for this Agent ("" when they are not): with secrets or network
    access, code could send a secret out; approval.trustCodeWithAccess opts out."""
    if spec.approval.trust_code_with_access:
        return ""
    held = [
        what
        for what, present in (
            # Provider keys are never given to tools (events.SECRET_ENV): they do not count.
            ("spec.secrets", any(s.env not in SECRET_ENV for s in spec.secrets)),
            ("http.allowedHosts", bool(spec.http.allowed_hosts)),
            ("a remote MCP server", any(s.url for s in spec.mcp_servers)),
        )
        if present
    ]
    if not held:
        return ""
    return (
        f"shell and python are RED while the agent has {' and '.join(held)} "
        "(approval.trustCodeWithAccess: true opts out)"
    )


def red_tools(spec: AgentSpec) -> list[ToolName]:
    """approval.redTools, plus shell and python when `code_is_red` (the claude-code runtime, which
    cannot pause for approval, disallows these)."""
    extra = [t for t in CODE_TOOLS if t in spec.tools and code_is_red(spec)]
    return [*spec.approval.red_tools, *(t for t in extra if t not in spec.approval.red_tools)]


def assess_call(
    tool: Tool | None, name: str, args: Mapping[str, Any], spec: AgentSpec, ctx: ToolContext
) -> Verdict:
    if tool is None:
        enabled = ", ".join(t.value for t in spec.tools) or "none"
        return Verdict("refuse", Risk.RED, f"tool {name!r} is not enabled (enabled: {enabled})")
    own = tool.assess(args, ctx)
    if own.refusal is not None:
        return Verdict("refuse", own.risk, own.refusal)
    risk = own.risk
    reason = ""
    code_reason = code_is_red(spec) if name in CODE_TOOLS else ""
    if any(t.value == name for t in spec.approval.red_tools):
        risk, reason = Risk.RED, f"tool {name!r} is listed in approval.redTools"
    elif code_reason:
        risk, reason = Risk.RED, code_reason
    elif risk is Risk.RED:
        reason = "the call changes state outside the workspace"
    if risk in spec.approval.required_for:
        return Verdict("approve", risk, reason or f"{risk.value} calls need approval")
    return Verdict("run", risk, reason)
