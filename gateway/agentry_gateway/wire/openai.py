"""OpenAI chat completions (POST /v1/chat/completions), streaming included.

Relayed: system/developer/user/assistant/tool messages with text content, tool_calls, tools
(functions), tool_choice, max_tokens / max_completion_tokens, temperature, top_p, stop, stream,
stream_options.include_usage. Dropped and named in `x-agentry-dropped`: other sampling and
bookkeeping parameters (seed, user, penalties, response_format, ...). Refused with 400: n > 1 and
non-text content parts (images, audio, files).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final, Literal

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
from agentry_llm.types import Block

from . import Parsed, StreamWriter, WireError

RELAYED = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "stop",
    "n",
}
FINISH = {
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "stop_sequence": "stop",
    "refusal": "content_filter",
    "other": "stop",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: RefusalType.BUDGET_EXCEEDED.value,
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def _bad(message: str) -> WireError:
    return WireError(400, "invalid_request_error", message)


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text", "output_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"{where}: only text content is relayed by the gateway, got {kind!r}")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise _bad(f"{where}: must be a string or a list of text parts")


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError:
        return {"_unparsed_arguments": raw}
    return value if isinstance(value, dict) else {"_unparsed_arguments": raw}


def _append(messages: list[Message], role: Literal["user", "assistant"], blocks: list[Block]) -> None:
    if not blocks:
        return
    if messages and messages[-1].role == role:
        messages[-1].content.extend(blocks)
    else:
        messages.append(Message(role=role, content=blocks))


def parse(body: Any, default_max_tokens: int = 4096) -> Parsed:
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: required")
    if body.get("n", 1) != 1:
        raise _bad("n: the gateway relays one choice per request (n = 1)")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages: required, a non-empty list")
    dropped = sorted(k for k in body if k not in RELAYED)
    system, messages = _messages(raw_messages)
    tools = _tools(body.get("tools") or [])
    tool_choice = _tool_choice(body.get("tool_choice"))
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) for s in stops):
        raise _bad("stop: must be a string or a list of strings")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("max_tokens: must be a positive integer")
    options = body.get("stream_options") or {}
    chat = ChatRequest(
        system="\n\n".join(s for s in system if s),
        messages=messages,
        tools=tools,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop_sequences=stops,
        tool_choice=tool_choice,
    )
    return Parsed(
        model=model,
        chat=chat,
        stream=bool(body.get("stream")),
        dropped=dropped,
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
    )


def _messages(raw_messages: list[Any]) -> tuple[list[str], list[Message]]:
    """The system texts, and the conversation (tool results as user turns)."""
    system: list[str] = []
    messages: list[Message] = []
    for i, raw in enumerate(raw_messages):
        where = f"messages.{i}"
        if not isinstance(raw, dict):
            raise _bad(f"{where}: must be an object")
        role = raw.get("role")
        if role in ("system", "developer"):
            system.append(_text(raw.get("content"), f"{where}.content"))
        elif role == "user":
            text = _text(raw.get("content"), f"{where}.content")
            _append(messages, "user", [TextBlock(text=text)] if text else [])
        elif role == "assistant":
            _append(messages, "assistant", _assistant(raw, where))
        elif role == "tool":
            result = ToolResultBlock(
                tool_use_id=str(raw.get("tool_call_id", "")),
                content=_text(raw.get("content"), f"{where}.content"),
            )
            _append(messages, "user", [result])
        else:
            raise _bad(f"{where}.role: unsupported role {role!r}")
    if not messages:
        raise _bad("messages: no user or assistant message to send")
    return system, messages


def _assistant(raw: dict[str, Any], where: str) -> list[Block]:
    blocks: list[Block] = []
    text = _text(raw.get("content"), f"{where}.content")
    if text:
        blocks.append(TextBlock(text=text))
    for call in raw.get("tool_calls") or []:
        function = call.get("function") or {} if isinstance(call, dict) else {}
        blocks.append(
            ToolUseBlock(
                id=str(call.get("id", "")),
                name=str(function.get("name", "")),
                input=_arguments(function.get("arguments")),
            )
        )
    return blocks


def _tools(raw_tools: Any) -> list[ToolSpec]:
    tools: list[ToolSpec] = []
    for j, tool in enumerate(raw_tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not function.get("name"):
            raise _bad(f"tools.{j}: only function tools are relayed")
        tools.append(
            ToolSpec(
                name=str(function["name"]),
                description=str(function.get("description", "")),
                input_schema=dict(function.get("parameters") or {"type": "object", "properties": {}}),
            )
        )
    return tools


def _tool_choice(choice: Any) -> ToolChoice | None:
    if choice in ("auto", "none", "required"):
        return ToolChoice(type={"auto": "auto", "none": "none", "required": "any"}[str(choice)])
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return ToolChoice(type="tool", name=str(choice["function"].get("name", "")))
    if choice is not None:
        raise _bad("tool_choice: must be auto, none, required or {type: function, function: {name}}")
    return None


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(f"{key}: must be a number")
    return float(value)


def _tool_calls(resp: ChatResponse) -> list[dict[str, Any]]:
    return [
        {
            "id": b.id,
            "type": "function",
            "function": {"name": b.name, "arguments": json.dumps(b.input)},
        }
        for b in resp.message.tool_uses()
    ]


def _usage(resp: ChatResponse) -> dict[str, Any]:
    """Chat completions' usage: `prompt_tokens` counts all input, the cached part is named in it (the
    protocol has no field for cache writes)."""
    inp, out = resp.usage.input_tokens, resp.usage.output_tokens
    return {
        "prompt_tokens": inp,
        "completion_tokens": out,
        "total_tokens": inp + out,
        "prompt_tokens_details": {"cached_tokens": resp.usage.cache_read_tokens},
    }


def completion(resp: ChatResponse, completion_id: str, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": resp.message.text() or None}
    calls = _tool_calls(resp)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": FINISH[resp.stop_reason]}],
        "usage": _usage(resp),
    }


def error(status: int, message: str, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    err_type = kind or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body: dict[str, Any] = {"error": {"message": message, "type": err_type, "param": None, "code": err_type}}
    if extra:
        body["error"]["agentry"] = extra
    return body


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class Stream:
    """`chat.completion.chunk` events: text deltas as they arrive, tool calls and the finish reason
    at the end, the usage chunk when the client asked for it, then `[DONE]`."""

    def __init__(self, completion_id: str, include_usage: bool) -> None:
        self.completion_id = completion_id
        self.include_usage = include_usage
        self.created = int(time.time())
        self.model = ""
        self.opened = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def open(self, model: str) -> bytes:
        self.model = model
        self.opened = True
        return _sse(self._chunk({"role": "assistant", "content": ""}))

    def text(self, delta: str) -> bytes:
        return _sse(self._chunk({"content": delta}))

    def close(self, resp: ChatResponse) -> bytes:
        out = b""
        for index, call in enumerate(_tool_calls(resp)):
            out += _sse(self._chunk({"tool_calls": [{"index": index, **call}]}))
        out += _sse(self._chunk({}, FINISH[resp.stop_reason]))
        if self.include_usage:
            usage_chunk = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": _usage(resp),
            }
            out += _sse(usage_chunk)
        return out + _sse("[DONE]")

    def fail(self, message: str, kind: str = "server_error") -> bytes:
        return _sse({"error": {"message": message, "type": kind, "param": None, "code": kind}})


class OpenAIWire:
    """Chat completions as a `WireProtocol`."""

    flavour = Flavour.OPENAI
    unauthorized = "invalid_api_key"
    not_found = "model_not_found"
    overloaded: str | None = None

    def parse(self, body: Any, default_max_tokens: int) -> Parsed:
        return parse(body, default_max_tokens)

    def answer(self, resp: ChatResponse, call_id: str, model: str) -> dict[str, Any]:
        return completion(resp, f"chatcmpl-{call_id}", model)

    def stream(self, call_id: str, parsed: Parsed) -> StreamWriter:
        return Stream(f"chatcmpl-{call_id}", parsed.include_usage)

    def error(self, status: int, message: str, kind: str | None = None, **extra: Any) -> dict[str, Any]:
        return error(status, message, kind, **extra)


WIRE: Final = OpenAIWire()
