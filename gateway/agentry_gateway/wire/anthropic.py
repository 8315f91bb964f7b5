"""Anthropic Messages API (POST /v1/messages), streaming included.

Relayed: system (text or text blocks), messages of text / tool_use / tool_result blocks, tools
(custom), tool_choice, max_tokens, temperature, top_p, stop_sequences, stream, and the prompt-cache
breakpoints (`cache_control`) on system blocks, message blocks and tools, checked as the API checks
them (`cache_marks`). Dropped and named in the `x-agentry-dropped` response header: parameters that
change cost but not the conversation (metadata, top_k, thinking, ...); thinking blocks in the
history go with them. Refused with 400: images, documents and server tools (the provider layer
carries text and tools only). Answers carry the API's cache usage fields.
"""

from __future__ import annotations

import json
from typing import Any, Final

from agentry_common.governance import RefusalType
from agentry_common.models import Provider as Flavour
from agentry_llm import (
    ChatRequest,
    ChatResponse,
    Message,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from agentry_llm.types import Block, CacheMark

from . import Parsed, StreamWriter, WireError, cache_marks

RELAYED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "stream",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "stop_sequences",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: RefusalType.BUDGET_EXCEEDED.value,
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


def _bad(message: str) -> WireError:
    return WireError(400, "invalid_request_error", message)


def _text_blocks(content: Any, where: str) -> list[TextBlock]:
    """A string or a list of text blocks, each with its breakpoint."""
    if isinstance(content, str):
        return [TextBlock(text=content)]
    if isinstance(content, list):
        blocks: list[TextBlock] = []
        for i, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text":
                kind = block.get("type") if isinstance(block, dict) else type(block).__name__
                raise _bad(f"{where}: only text blocks are relayed by the gateway, got {kind!r}")
            mark = cache_marks.mark_of(block, f"{where}.{i}")
            blocks.append(TextBlock(text=str(block.get("text", "")), cache=mark))
        return blocks
    raise _bad(f"{where}: must be a string or a list of text blocks")


def _text_of(content: Any, where: str) -> tuple[str, CacheMark | None]:
    """The text of a string or text blocks, and the last breakpoint among them (a tool result's
    nested blocks: the result as a whole carries it, a prefix at most one block longer)."""
    blocks = _text_blocks(content, where)
    marked = [b.cache for b in blocks if b.cache is not None]
    return "\n\n".join(b.text for b in blocks), (marked[-1] if marked else None)


def _blocks(content: Any, index: int, dropped: set[str]) -> list[Block]:
    if isinstance(content, str):
        return [TextBlock(text=content)] if content else []
    if not isinstance(content, list):
        raise _bad(f"messages.{index}.content: must be a string or a list of blocks")
    out: list[Block] = []
    for j, block in enumerate(content):
        where = f"messages.{index}.content.{j}"
        if not isinstance(block, dict):
            raise _bad(f"{where}: must be an object")
        kind = block.get("type")
        mark = cache_marks.mark_of(block, where)
        if kind == "text":
            out.append(TextBlock(text=str(block.get("text", "")), cache=mark))
        elif kind == "tool_use":
            tool_input = block.get("input")
            out.append(
                ToolUseBlock(
                    id=str(block.get("id", "")),
                    name=str(block.get("name", "")),
                    input=tool_input if isinstance(tool_input, dict) else {},
                    cache=mark,
                )
            )
        elif kind == "tool_result":
            raw = block.get("content", "")
            text, nested = _text_of(raw, f"{where}.content") if raw else ("", None)
            out.append(
                ToolResultBlock(
                    tool_use_id=str(block.get("tool_use_id", "")),
                    content=text,
                    is_error=bool(block.get("is_error", False)),
                    cache=mark or nested,
                )
            )
        elif kind in ("thinking", "redacted_thinking"):
            dropped.add("thinking")
        else:
            raise _bad(f"{where}: block type {kind!r} is not relayed by the gateway (text and tools only)")
    return out


def parse(body: Any) -> Parsed:
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("max_tokens: required, a positive integer")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages: required, a non-empty list")
    dropped = {k for k in body if k not in RELAYED}
    messages = _messages(raw_messages, dropped)
    system = _system(body.get("system") or "")
    tools = _tools(body.get("tools") or [])
    tool_choice = _tool_choice(body.get("tool_choice"))
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("stop_sequences: must be a list of strings")
    chat = ChatRequest(
        system=system,
        messages=messages,
        tools=tools,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop_sequences=list(stops),
        tool_choice=tool_choice,
    )
    cache_marks.check(chat)
    return Parsed(model=model, chat=chat, stream=bool(body.get("stream")), dropped=sorted(dropped))


def _messages(raw_messages: list[Any], dropped: set[str]) -> list[Message]:
    messages: list[Message] = []
    for i, raw in enumerate(raw_messages):
        if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: must be 'user' or 'assistant'")
        content = _blocks(raw.get("content", ""), i, dropped)
        if not content:
            continue
        if messages and messages[-1].role == raw["role"]:
            messages[-1].content.extend(content)  # the API joins consecutive turns of one role
        else:
            messages.append(Message(role=raw["role"], content=content))
    if not messages:
        raise _bad("messages: nothing to send (all empty)")
    return messages


def _system(raw: Any) -> str | list[TextBlock]:
    """Text, or text blocks when one of them carries a breakpoint (the mark needs the block)."""
    blocks = _text_blocks(raw, "system")
    if any(b.cache is not None for b in blocks):
        return [b for b in blocks if b.text or b.cache is not None]
    return "\n\n".join(b.text for b in blocks)


def _tools(raw_tools: Any) -> list[ToolSpec]:
    tools: list[ToolSpec] = []
    for j, tool in enumerate(raw_tools):
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom" or "input_schema" not in tool:
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools.{j}: only custom tools (name, input_schema) are relayed, got type {kind!r}")
        tools.append(
            ToolSpec(
                name=str(tool.get("name", "")),
                description=str(tool.get("description", "")),
                input_schema=dict(tool["input_schema"]),
                cache=cache_marks.mark_of(tool, f"tools.{j}"),
            )
        )
    return tools


def _tool_choice(choice: Any) -> ToolChoice | None:
    if isinstance(choice, dict) and choice.get("type") in ("auto", "any", "none", "tool"):
        tool_choice = ToolChoice(type=choice["type"], name=choice.get("name"))
        if tool_choice.type == "tool" and not tool_choice.name:
            raise _bad("tool_choice: type 'tool' needs a name")
        return tool_choice
    if choice is not None:
        raise _bad("tool_choice: must be {type: auto|any|none|tool}")
    return None


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(f"{key}: must be a number")
    return float(value)


def _stop_reason(resp: ChatResponse) -> str:
    return "end_turn" if resp.stop_reason == "other" else resp.stop_reason


def _wire_blocks(resp: ChatResponse) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in resp.message.content:
        if isinstance(block, TextBlock):
            out.append({"type": "text", "text": block.text})
        elif isinstance(block, ToolUseBlock):
            out.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return out


def message(resp: ChatResponse, msg_id: str, model: str) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _wire_blocks(resp),
        "stop_reason": _stop_reason(resp),
        "stop_sequence": None,
        "usage": cache_marks.anthropic_usage(resp.usage),
    }


def error(status: int, message: str, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind or ERROR_TYPES.get(status, "api_error"), "message": message},
    }
    if extra:
        body["agentry"] = extra
    return body


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Stream:
    """Server-sent events of one streamed message. Text is relayed as it arrives; tool calls
    (which the provider layer hands over complete) follow as whole blocks; usage comes last, in
    `message_delta` (whose counts the SDKs take over those of `message_start`)."""

    def __init__(self, msg_id: str) -> None:
        self.msg_id = msg_id
        self.index = 0
        self.text_open = False
        self.opened = False

    def open(self, model: str) -> bytes:
        self.opened = True
        start: dict[str, Any] = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _sse("message_start", {"type": "message_start", "message": start}) + _sse(
            "ping", {"type": "ping"}
        )

    def text(self, delta: str) -> bytes:
        out = b""
        if not self.text_open:
            self.text_open = True
            out += _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": self.index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        return out + _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": self.index,
                "delta": {"type": "text_delta", "text": delta},
            },
        )

    def close(self, resp: ChatResponse) -> bytes:
        out = b""
        if self.text_open:
            out += _sse("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.index += 1
            self.text_open = False
        elif resp.message.text():
            # Text the provider did not stream (none expected; kept for safety).
            out += self.text(resp.message.text()) + _sse(
                "content_block_stop", {"type": "content_block_stop", "index": self.index}
            )
            self.index += 1
            self.text_open = False
        for block in resp.message.tool_uses():
            start = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.input)}
            out += _sse(
                "content_block_start",
                {"type": "content_block_start", "index": self.index, "content_block": start},
            )
            out += _sse(
                "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}
            )
            out += _sse("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.index += 1
        # The SDKs take message_delta's counts over message_start's (all but `cache_creation`).
        usage = cache_marks.anthropic_usage(resp.usage)
        out += _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(resp), "stop_sequence": None},
                "usage": usage,
            },
        )
        return out + _sse("message_stop", {"type": "message_stop"})

    def fail(self, message: str, kind: str = "overloaded_error") -> bytes:
        """An error after the stream started: the SDKs raise it (as a retryable overload)."""
        return _sse("error", {"type": "error", "error": {"type": kind, "message": message}})


class AnthropicWire:
    """The Messages API as a `WireProtocol`."""

    flavour = Flavour.ANTHROPIC
    unauthorized = "authentication_error"
    not_found = "not_found_error"
    overloaded: str | None = "overloaded_error"

    def parse(self, body: Any, default_max_tokens: int) -> Parsed:
        return parse(body)  # max_tokens is required by this protocol

    def answer(self, resp: ChatResponse, call_id: str, model: str) -> dict[str, Any]:
        return message(resp, f"msg_{call_id}", model)

    def stream(self, call_id: str, parsed: Parsed) -> StreamWriter:
        return Stream(f"msg_{call_id}")

    def error(self, status: int, message: str, kind: str | None = None, **extra: Any) -> dict[str, Any]:
        return error(status, message, kind, **extra)


WIRE: Final = AnthropicWire()
