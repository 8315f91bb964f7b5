"""Which tool calls run, which wait for a human, which are refused. One place for the rule.

1. Refused outright (the model gets an error result, no approval can override): a tool the agent
   does not have, a path outside the workspace, an http request to a host not in allowedHosts.
2. Otherwise the call has a risk: the tool's own (GREEN read-only, YELLOW changes the sandbox,
   RED changes something outside: http POST/PUT/PATCH/DELETE), raised to RED for every tool listed
   in approval.redTools.
3. A call whose risk is listed in approval.requiredFor (default [RED]) waits for approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agentry_common.models import AgentSpec, Risk

from .tools import Tool, ToolContext


@dataclass(frozen=True)
class Verdict:
    action: Literal["run", "refuse", "approve"]
    risk: Risk
    reason: str = ""


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
    if any(t.value == name for t in spec.approval.red_tools):
        risk, reason = Risk.RED, f"tool {name!r} is listed in approval.redTools"
    elif risk is Risk.RED:
        reason = "the call changes state outside the workspace"
    if risk in spec.approval.required_for:
        return Verdict("approve", risk, reason or f"{risk.value} calls need approval")
    return Verdict("run", risk, reason)
