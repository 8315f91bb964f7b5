"""Anthropic Messages API through the official SDK (async, streaming)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

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


def usage_of(usage: Any) -> TokenUsage:
    """The Messages API's usage: `input_tokens` there is only the part after the last breakpoint;
    here it is every input token, with the cached parts named (TokenUsage)."""
    read = usage.cache_read_input_tokens or 0
    write = usage.cache_creation_input_tokens or 0
    creation = getattr(usage, "cache_creation", None)
    write_1h = (getattr(creation, "ephemeral_1h_input_tokens", 0) or 0) if creation is not None else 0
    return TokenUsage(
        input_tokens=(usage.input_tokens or 0) + read + write,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write),
    )


def sampling(request: ChatRequest) -> dict[str, Any]:
    """The optional parameters of a request in Messages API form (only those that are set)."""
    out: dict[str, Any] = {}
    # Recent SDKs no longer declare temperature/top_p (newer models fix them): relayed as extra
    # body fields when a caller sets them, so the API itself accepts or refuses them.
    extra = {
        k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p)) if v is not None
    }
    if extra:
        out["extra_body"] = extra
    if request.stop_sequences:
        out["stop_sequences"] = list(request.stop_sequences)
    choice = request.tool_choice
    if choice is not None:
        out["tool_choice"] = (
            {"type": choice.type, "name": choice.name} if choice.type == "tool" else {"type": choice.type}
        )
    return out


# The SDK's own client span per call (when a tracer provider is set: agentry_common.tracing), which
# sends its trace context upstream (to the gateway, or from the gateway to the provider). Given
# explicitly so no ANTHROPIC_OPEN_TELEMETRY* variable can switch on recording prompts and answers.
SDK_TELEMETRY: anthropic.OpenTelemetryOptions = {
    "propagation": True,
    "traces": {"enabled": True, "content_mode": "metadata_only"},
}


class AnthropicProvider(SdkProvider):
    kind = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        # max_retries=0: retries belong to the resilience layer, which records each one.
        client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            default_headers=dict(default_headers or {}),
            open_telemetry=SDK_TELEMETRY,
        )
        super().__init__(model, base_url, client)

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.max_tokens,
            "system": to_wire_system(request.system),
            "messages": to_wire_messages(request.messages),
        }
        if request.tools:
            kwargs["tools"] = to_wire_tools(request.tools)
        kwargs.update(sampling(request))
        try:
            async with self._client.messages.stream(**kwargs) as stream:
                async for event in stream:
                    if event.type == "text" and on_text is not None:
                        on_text(event.text)
                final = await stream.get_final_message()
        except anthropic.APIStatusError as exc:
            err_type = exc.type or ""
            raise ProviderError(
                exc.api_message or str(exc),
                provider=self.name,
                status=exc.status_code,
                retryable=is_retryable_status(exc.status_code) or err_type in _TRANSIENT_TYPES,
                retry_after=retry_after_seconds(exc.response.headers),
                final=is_refusal(err_type),
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise ProviderError(str(exc), provider=self.name, retryable=True) from exc
        except Exception as exc:  # a broken stream surfaces as transport errors of the SDK's client
            raise ProviderError(
                f"{type(exc).__name__}: {exc}", provider=self.name, retryable=is_transport_error(exc)
            ) from exc

        content: list[Block] = []
        for block in final.content:
            if block.type == "text":
                content.append(TextBlock(text=block.text))
            elif block.type == "tool_use":
                tool_input = block.input if isinstance(block.input, dict) else {}
                content.append(ToolUseBlock(id=block.id, name=block.name, input=tool_input))
        return ChatResponse(
            message=Message(role="assistant", content=content),
            stop_reason=_STOP_REASONS.get(final.stop_reason or "", "other"),
            usage=usage_of(final.usage),
            provider="anthropic",
            model=self.answered_by(final.model),
        )
