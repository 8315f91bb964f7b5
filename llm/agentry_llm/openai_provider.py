"""Any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, LM Studio, a gateway)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import openai

from agentry_common.tracing import trace_headers

from .base import (
    ProviderError,
    SdkProvider,
    TextCallback,
    is_refusal,
    is_retryable_status,
    is_transport_error,
    retry_after_seconds,
)
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


class OpenAIProvider(SdkProvider):
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
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=dict(default_headers or {}),
        )
        super().__init__(model, base_url, client)

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        stream_state = _Stream(on_text)
        try:
            stream = await self._client.chat.completions.create(**self._request_kwargs(request))
            async for chunk in stream:
                stream_state.add(chunk)
        except openai.APIStatusError as exc:
            raise ProviderError(
                _error_message(exc),
                provider=self.name,
                status=exc.status_code,
                retryable=is_retryable_status(exc.status_code),
                retry_after=retry_after_seconds(exc.response.headers),
                final=is_refusal(_error_type(exc)),
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(str(exc), provider=self.name, retryable=True) from exc
        except Exception as exc:
            raise ProviderError(
                f"{type(exc).__name__}: {exc}", provider=self.name, retryable=is_transport_error(exc)
            ) from exc
        return ChatResponse(
            message=Message(role="assistant", content=stream_state.content()),
            stop_reason=stream_state.stop_reason(),
            usage=stream_state.usage,
            provider="openai",
            model=self.answered_by(stream_state.reported),
        )

    def _request_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": to_chat_messages(request.system_text(), request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self._max_tokens_param: request.max_tokens,
        }
        if request.tools:
            kwargs["tools"] = [
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
        kwargs.update(sampling(request))
        if traced := trace_headers():  # the caller's span (a turn, the gateway's call) continues upstream
            kwargs["extra_headers"] = traced
        return kwargs


def usage_of(usage: Any) -> TokenUsage:
    """Chat completions' usage: `prompt_tokens` counts all input; the part the endpoint read from its
    automatic prompt cache is `prompt_tokens_details.cached_tokens` (OpenAI, "Prompt caching"; absent
    on servers without a cache). Writes are not reported: they cost the input rate."""
    prompt = usage.prompt_tokens or 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=usage.completion_tokens or 0,
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
        self.reported = chunk.model or self.reported
        if chunk.usage is not None:
            self.usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                self.text_parts.append(delta.content)
                if self.on_text is not None:
                    self.on_text(delta.content)
            for call in delta.tool_calls or []:
                slot = self.calls.setdefault(call.index, {"id": "", "name": "", "args": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["args"] += call.function.arguments or ""
            if choice.finish_reason:
                self.finish = choice.finish_reason

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


def _error_type(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("type") or inner.get("code") or "")
    return ""


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return exc.message
