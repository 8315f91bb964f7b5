"""The `chat {model}` span of a model call (GenAI semantic conventions), shared by the runtime's turns
and the gateway's provider calls. Ids, names and counts only: never a prompt or an answer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, SpanKind

from agentry_common import tracing

from .types import ChatResponse

_TRACER = tracing.tracer("agentry.llm")


def provider_of(name: str) -> str:
    """The gen_ai provider ("anthropic", "openai") of a provider name such as "anthropic/claude-x"."""
    return name.split("/", 1)[0]


@contextmanager
def chat_span(provider: str, model: str, extra: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A client span `chat {model}` around one model call (or one turn over a fallback chain)."""
    attrs = {
        tracing.GEN_AI_OPERATION: tracing.OP_CHAT,
        tracing.GEN_AI_PROVIDER: provider,
        tracing.GEN_AI_SYSTEM: provider,
        tracing.GEN_AI_REQUEST_MODEL: model,
        **(extra or {}),
    }
    with tracing.span(_TRACER, f"{tracing.OP_CHAT} {model}", attrs, kind=SpanKind.CLIENT) as current:
        yield current


def record_response(span: Span, response: ChatResponse) -> None:
    """The answer's model, token counts and finish reason on its span."""
    span.set_attributes(
        {
            tracing.GEN_AI_RESPONSE_MODEL: response.model,
            tracing.GEN_AI_INPUT_TOKENS: response.usage.input_tokens,
            tracing.GEN_AI_OUTPUT_TOKENS: response.usage.output_tokens,
            tracing.GEN_AI_FINISH_REASONS: [str(response.stop_reason)],
        }
    )
