"""Any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, LM Studio, a gateway)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .base import ProviderError, TextCallback
from .http import HttpProvider
from .types import (
    Block,
    ChatRequest,
    ChatResponse,
    Message,
    StopReason,
    TextBlock,
    TokenUsage,
    ToolResultBlock,
    ToolUseBlock,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_FINISH: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


def to_chat_messages(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Our conversation as chat-completions messages: tool results become `tool` role messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for msg in messages:
        if msg.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": msg.text() or None}
            calls = [
                {
                    "id": b.id,
                    "type": "function",
                    "function": {"name": b.name, "arguments": json.dumps(b.input)},
                }
                for b in msg.tool_uses()
            ]
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
            continue
        # A `tool` message must directly follow the assistant message that asked for it.
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                content = f"ERROR: {block.content}" if block.is_error else block.content
                out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": content})
        text = msg.text()
        if text:
            out.append({"role": "user", "content": text})
    return out


def _parse_arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        # Kept visible so the tool reports a clear validation error to the model.
        return {"_unparsed_arguments": raw}
    return value if isinstance(value, dict) else {"_unparsed_arguments": raw}


def sampling(request: ChatRequest) -> dict[str, Any]:
    """The optional parameters of a request in chat-completions form (only those that are set)."""
    out: dict[str, Any] = {}
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.stop_sequences:
        out["stop"] = list(request.stop_sequences)
    choice = request.tool_choice
    if choice is not None:
        if choice.type == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    return out


class OpenAIProvider(HttpProvider):
    kind = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        # OpenAI's own reasoning models refuse `max_tokens`; most local servers only know it.
        self._max_tokens_param = "max_tokens" if base_url else "max_completion_tokens"
        headers = {"authorization": f"Bearer {api_key}", **(default_headers or {})}
        super().__init__(model, base_url, DEFAULT_BASE_URL, timeout, headers)

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        stream_state = _Stream(on_text)
        async with self.streaming(
            "/chat/completions", self._request_body(request), _error_of, request.headers
        ) as stream:
            async for event in stream.events:
                if event.data.strip() == "[DONE]":
                    break
                chunk = event.json()
                if isinstance(chunk, dict) and chunk.get("error"):  # a failure inside a 200 stream
                    err_type, message = _error_of(chunk)
                    raise ProviderError(message or err_type or "stream error", provider=self.name, status=200)
                stream_state.add(chunk)
        return ChatResponse(
            message=Message(role="assistant", content=stream_state.content()),
            stop_reason=stream_state.stop_reason(),
            usage=stream_state.usage,
            provider="openai",
            model=self.answered_by(stream_state.reported),
            gateway=stream.gateway,
        )

    def _request_body(self, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": to_chat_messages(request.system_text(), request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self._max_tokens_param: request.max_tokens,
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        body.update(sampling(request))
        return body


def usage_of(usage: Mapping[str, Any]) -> TokenUsage:
    """Chat completions' usage: `prompt_tokens` counts all input; the part the endpoint read from its
    automatic prompt cache is `prompt_tokens_details.cached_tokens` (OpenAI, "Prompt caching"; absent
    on servers without a cache). Writes are not reported: they cost the input rate."""
    prompt = usage.get("prompt_tokens") or 0
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=usage.get("completion_tokens") or 0,
        cache_read_tokens=min(cached, prompt),
    )


class _Stream:
    """What the chunks of one streamed chat completion add up to."""

    def __init__(self, on_text: TextCallback | None) -> None:
        self.on_text = on_text
        self.text_parts: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish: str | None = None
        self.usage = TokenUsage()
        self.reported: str | None = None  # the model the endpoint says answered

    def add(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        self.reported = chunk.get("model") or self.reported
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text_parts.append(delta["content"])
                if self.on_text is not None:
                    self.on_text(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(int(call.get("index") or 0), {"id": "", "name": "", "args": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["args"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]

    def content(self) -> list[Block]:
        content: list[Block] = []
        if self.text_parts:
            content.append(TextBlock(text="".join(self.text_parts)))
        for index in sorted(self.calls):
            slot = self.calls[index]
            content.append(
                ToolUseBlock(
                    id=slot["id"] or f"call_{index}",
                    name=slot["name"],
                    input=_parse_arguments(slot["args"]),
                )
            )
        return content

    def stop_reason(self) -> StopReason:
        return _FINISH.get(self.finish or "", "tool_use" if self.calls else "end_turn")


def _error_of(body: Any) -> tuple[str, str]:
    """(type, message) of an error body: `{"error": {"type" or "code", "message"}}`, or the same
    fields at the top level (some compatible servers)."""
    inner = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        return "", ""
    message = inner.get("message")
    return str(inner.get("type") or inner.get("code") or ""), message if isinstance(message, str) else ""
