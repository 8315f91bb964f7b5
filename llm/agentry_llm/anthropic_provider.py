"""Anthropic Messages API, streamed (SSE) over httpx: the wire itself rather than the SDK.

The SDK's import loads about 3,400 modules (some 2 s of CPU), most of a run pod's start;
the one request every component makes (a streamed Messages call) is small enough to speak directly
(`HttpProvider`: the request, its errors, the event stream).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import ProviderError, TextCallback, is_refusal
from .http import HttpProvider
from .types import (
    Block,
    CacheMark,
    ChatRequest,
    ChatResponse,
    Message,
    StopReason,
    TextBlock,
    TokenUsage,
    ToolSpec,
    ToolUseBlock,
)

# Error types the API also sends inside a 200 stream (an `error` SSE event): transient ones.
_TRANSIENT_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
}


def cache_control(mark: CacheMark | None) -> dict[str, Any]:
    """A breakpoint as the Messages API spells it (the default 5-minute TTL is left implicit)."""
    if mark is None:
        return {}
    return {"cache_control": {"type": "ephemeral", **({"ttl": mark.ttl} if mark.ttl != "5m" else {})}}


def to_wire_block(block: Block) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        wire: dict[str, Any] = {"type": "text", "text": block.text}
    elif isinstance(block, ToolUseBlock):
        wire = {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    else:
        wire = {
            "type": "tool_result",
            "tool_use_id": block.tool_use_id,
            "content": block.content,
            "is_error": block.is_error,
        }
    return wire | cache_control(block.cache)


def to_wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": [to_wire_block(b) for b in m.content]} for m in messages]


def to_wire_system(system: str | list[TextBlock]) -> str | list[dict[str, Any]]:
    return system if isinstance(system, str) else [to_wire_block(b) for b in system]


def to_wire_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema}
        | cache_control(t.cache)
        for t in tools
    ]


def usage_of(usage: Mapping[str, Any]) -> TokenUsage:
    """The Messages API's usage: `input_tokens` there is only the part after the last breakpoint;
    here it is every input token, with the cached parts named (TokenUsage)."""
    read = usage.get("cache_read_input_tokens") or 0
    write = usage.get("cache_creation_input_tokens") or 0
    creation = usage.get("cache_creation") or {}
    write_1h = (creation.get("ephemeral_1h_input_tokens") or 0) if isinstance(creation, Mapping) else 0
    return TokenUsage(
        input_tokens=(usage.get("input_tokens") or 0) + read + write,
        output_tokens=usage.get("output_tokens") or 0,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write),
    )


def sampling(request: ChatRequest) -> dict[str, Any]:
    """The optional parameters of a request in Messages API form (only those that are set)."""
    # temperature/top_p only when a caller sets them: newer models fix them, and the API itself
    # accepts or refuses them.
    out: dict[str, Any] = {
        k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p)) if v is not None
    }
    if request.stop_sequences:
        out["stop_sequences"] = list(request.stop_sequences)
    choice = request.tool_choice
    if choice is not None:
        out["tool_choice"] = (
            {"type": choice.type, "name": choice.name} if choice.type == "tool" else {"type": choice.type}
        )
    return out


class AnthropicProvider(HttpProvider):
    kind = "anthropic"
    transient_types = frozenset(_TRANSIENT_TYPES)

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        headers = {"x-api-key": api_key, "anthropic-version": API_VERSION, **(default_headers or {})}
        super().__init__(model, base_url, DEFAULT_BASE_URL, timeout, headers)

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.max_tokens,
            "system": to_wire_system(request.system),
            "messages": to_wire_messages(request.messages),
            "stream": True,
        }
        if request.tools:
            body["tools"] = to_wire_tools(request.tools)
        body.update(sampling(request))
        message = _Message(on_text, self.name)
        async with self.streaming("/v1/messages", body, _error_of, request.headers) as stream:
            async for event in stream.events:
                message.add(event.event, event.json())
        return ChatResponse(
            message=Message(role="assistant", content=message.content()),
            stop_reason=_STOP_REASONS.get(message.stop_reason, "other"),
            usage=usage_of(message.usage),
            provider="anthropic",
            model=self.answered_by(message.model),
            gateway=stream.gateway,
        )


def _error_of(body: Any) -> tuple[str, str]:
    """(type, message) of an error body, `{"type": "error", "error": {"type", "message"}}`."""
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        return str(inner.get("type") or ""), str(inner.get("message") or "")
    return "", ""


class _Message:
    """What the events of one streamed message add up to (the Messages API's streaming protocol:
    message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error)."""

    def __init__(self, on_text: TextCallback | None, provider: str) -> None:
        self.on_text, self.provider = on_text, provider
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.stop_reason = ""

    def add(self, kind: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if kind == "message_start":
            start = data.get("message") or {}
            self.model = start.get("model") or self.model
            self.usage.update(start.get("usage") or {})
        elif kind == "content_block_start":
            block = dict(data.get("content_block") or {})
            block["partial_json"] = ""
            self.blocks[int(data.get("index", len(self.blocks)))] = block
        elif kind == "content_block_delta":
            self._delta(self.blocks.get(int(data.get("index", -1))), data.get("delta") or {})
        elif kind == "message_delta":
            self.stop_reason = (data.get("delta") or {}).get("stop_reason") or self.stop_reason
            # Counts here are cumulative: each one set replaces the start's.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "error":
            err_type, text = _error_of(data)
            raise ProviderError(
                text or err_type or "stream error",
                provider=self.provider,
                status=200,
                retryable=err_type in _TRANSIENT_TYPES,
                final=is_refusal(err_type),
                kind=err_type or "",
            )

    def _delta(self, block: dict[str, Any] | None, delta: dict[str, Any]) -> None:
        if block is None:
            return
        if delta.get("type") == "text_delta":
            text = str(delta.get("text") or "")
            block["text"] = str(block.get("text") or "") + text
            if self.on_text is not None and text:
                self.on_text(text)
        elif delta.get("type") == "input_json_delta":
            block["partial_json"] += str(delta.get("partial_json") or "")

    def content(self) -> list[Block]:
        content: list[Block] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if block.get("type") == "text":
                content.append(TextBlock(text=str(block.get("text") or "")))
            elif block.get("type") == "tool_use":
                content.append(
                    ToolUseBlock(id=str(block["id"]), name=str(block["name"]), input=_tool_input(block))
                )
        return content


def _tool_input(block: dict[str, Any]) -> dict[str, Any]:
    """A tool call's input: its streamed JSON, else the start's (a call without arguments)."""
    raw = block["partial_json"]
    try:
        parsed = json.loads(raw) if raw else block.get("input")
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {}
