"""The run's spans: `invoke_agent` for the run (a child of the operator's reconcile, whose traceparent
the pod gets as TRACEPARENT), `chat {model}` per turn, `execute_tool {name}` per tool call. Spans go
to OTEL_EXPORTER_OTLP_ENDPOINT when set (the operator sets it when tracing is on); each model call
carries its turn's traceparent to the gateway (agentry_llm). Ids, names and counts only."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.trace import Span, SpanKind

from agentry_common import tracing
from agentry_llm import ChatProvider, ChatRequest, ChatResponse, ProviderChain, ToolUseBlock
from agentry_llm.telemetry import chat_span, provider_of, record_response

from .config import RunConfig
from .outcome import Outcome

_TRACER = tracing.tracer("agentry.workspace")


def start() -> bool:
    return tracing.setup_tracing(tracing.SERVICE_RUNTIME)


def stop() -> None:
    """Export what is buffered before the pod's process exits."""
    tracing.shutdown_tracing()


@contextmanager
def run_span(cfg: RunConfig) -> Iterator[Span]:
    attrs = {
        tracing.GEN_AI_OPERATION: tracing.OP_INVOKE_AGENT,
        tracing.GEN_AI_AGENT_NAME: cfg.agent,
        tracing.ATTR_AGENT: cfg.agent,
        tracing.ATTR_NAMESPACE: cfg.namespace,
        tracing.ATTR_EXECUTION: cfg.execution,
        tracing.ATTR_CORRELATION_ID: cfg.correlation_id,
    }
    name = f"{tracing.OP_INVOKE_AGENT} {cfg.agent}"
    parent = cfg.env.get(tracing.ENV_TRACEPARENT)
    with tracing.span(_TRACER, name, attrs, kind=SpanKind.INTERNAL, parent=parent) as current:
        yield current


def record_outcome(span: Span, outcome: Outcome) -> None:
    span.set_attribute(tracing.ATTR_STOP_REASON, outcome.stop_reason.value)
    if outcome.exit_code:
        tracing.set_error(span, outcome.stop_reason.value)


async def traced_turn(
    chain: ProviderChain,
    providers: Sequence[ChatProvider],
    request: ChatRequest,
    on_text: Callable[[str], None],
    turn: int,
) -> ChatResponse:
    """One turn's model call over the fallback chain, as a `chat {model}` span of the first model."""
    first = providers[0] if providers else None
    provider = provider_of(first.name) if first else ""
    model = first.model if first else ""
    with chat_span(provider, model, {tracing.ATTR_TURN: turn}) as span:
        response = await chain.complete(request, on_text=on_text)
        record_response(span, response)
        return response


@contextmanager
def tool_span(use: ToolUseBlock, risk: str, action: str) -> Iterator[Span]:
    attrs = {
        tracing.GEN_AI_OPERATION: tracing.OP_EXECUTE_TOOL,
        tracing.GEN_AI_TOOL_NAME: use.name,
        tracing.GEN_AI_TOOL_CALL_ID: use.id,
        tracing.ATTR_TOOL_RISK: risk,
        tracing.ATTR_TOOL_ACTION: action,
    }
    with tracing.span(_TRACER, f"{tracing.OP_EXECUTE_TOOL} {use.name}", attrs) as current:
        yield current
