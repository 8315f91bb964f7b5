"""Running one tool call: its events, its span, its errors as results the model can read."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from agentry_common.tracing import set_error
from agentry_llm import ToolResultBlock, ToolUseBlock

from .events import EventSink
from .journal import INTERRUPTED_RESULT
from .policy import Verdict
from .telemetry import tool_span
from .tools import Tool, ToolContext, ToolInputError
from .tools.base import one_line


async def execute(
    use: ToolUseBlock,
    verdict: Verdict,
    tools: Mapping[str, Tool],
    ctx: ToolContext,
    events: EventSink,
    turn: int,
) -> ToolResultBlock:
    with tool_span(use, verdict.risk.value, verdict.action) as span:
        tool = tools.get(use.name)
        described = tool.describe(use.input) if tool is not None else use.name
        events.emit(
            "tool_call",
            turn=turn,
            toolUseId=use.id,
            tool=use.name,
            risk=verdict.risk.value,
            action=verdict.action,
            arguments=described,
        )
        started = time.monotonic()
        details: dict[str, Any] = {}
        if verdict.action == "refuse" or tool is None:
            content, is_error, refused = f"Refused by policy: {verdict.reason}", True, True
        else:
            refused = False
            try:
                out = await tool.run(use.input, ctx)
                content, is_error, details = out.content, out.is_error, out.details
            except ToolInputError as err:
                content, is_error = str(err), True
            except OSError as err:
                content, is_error = f"{use.name} failed: {err}", True
        events.emit(
            "tool_result",
            toolUseId=use.id,
            tool=use.name,
            isError=is_error,
            refused=refused,
            bytes=len(content.encode("utf-8")),
            summary=one_line(content, 300),
            durationMs=int((time.monotonic() - started) * 1000),
            details=details,
        )
        if is_error:
            set_error(span, "tool error")
        return ToolResultBlock(tool_use_id=use.id, content=content, is_error=is_error)


def unrun_result(events: EventSink, use: ToolUseBlock, content: str, **marks: Any) -> ToolResultBlock:
    """The result of a call that was not run (a human denied it, a lost pod left it interrupted), and
    its `tool_result` event, marked as such."""
    result = ToolResultBlock(tool_use_id=use.id, content=content, is_error=True)
    events.emit(
        "tool_result",
        toolUseId=use.id,
        tool=use.name,
        isError=True,
        bytes=len(result.content),
        summary=one_line(result.content, 300),
        durationMs=0,
        **marks,
    )
    return result


def interrupted_result(use: ToolUseBlock, events: EventSink) -> ToolResultBlock:
    """A call a lost pod started and never finished (not idempotent: it is not run again)."""
    return unrun_result(events, use, INTERRUPTED_RESULT, refused=False, interrupted=True, details={})


def idempotent(tools: Mapping[str, Tool], use: ToolUseBlock) -> bool:
    tool = tools.get(use.name)
    return tool is not None and tool.idempotent(use.input)
