"""OpenTelemetry tracing: one setup for every component, and the contracts of one trace per run.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (the standard variable) is set: then spans go over OTLP/HTTP
(protobuf) through a batch processor flushed at exit; without it the API's no-op tracer is used, so
an untraced installation does no tracing work. The SDK reads the other standard variables itself
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG], OTEL_EXPORTER_OTLP_HEADERS).

A run is one trace: the API stores its request's span context on the Execution
(`ANNOTATION_TRACEPARENT`), the operator reconciles in that context and hands it to the run pod
(`ENV_TRACEPARENT` and the same annotation on the Job and pod), the runtime's calls to the gateway
carry W3C `traceparent`. Span attributes hold ids, names and counts only: never a prompt, a tool's
input or output, or a secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .constants import GROUP

ENV_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_SAMPLER = "OTEL_TRACES_SAMPLER"
ENV_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
# The W3C trace context of a run pod's parent span (the operator's reconcile); the name the
# OpenTelemetry environment-carrier proposal uses.
ENV_TRACEPARENT = "TRACEPARENT"
# On an Execution (written by the API), and on its Job and pod (by the operator): the W3C traceparent
# of the span the run's trace continues from.
ANNOTATION_TRACEPARENT = f"{GROUP}/traceparent"
HEADER_TRACEPARENT = "traceparent"

# service.name of each component.
SERVICE_API = "agentry-api"
SERVICE_OPERATOR = "agentry-operator"
SERVICE_GATEWAY = "agentry-gateway"
SERVICE_RUNTIME = "agentry-workspace"

# Span names (GenAI semantic conventions: "{operation} {model}", "execute_tool {tool}").
SPAN_CREATE_EXECUTION = "create Execution"
SPAN_RECONCILE = "reconcile Execution"
SPAN_RUN = "invoke_agent"
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"

# GenAI semantic-convention attributes.
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
# Agentry's own.
ATTR_EXECUTION = "agentry.execution"
ATTR_NAMESPACE = "agentry.namespace"
ATTR_AGENT = "agentry.agent"
ATTR_CORRELATION_ID = "agentry.correlation_id"
ATTR_TURN = "agentry.turn"
ATTR_STOP_REASON = "agentry.stop_reason"
ATTR_TOOL_RISK = "agentry.tool.risk"
ATTR_TOOL_ACTION = "agentry.tool.action"
ATTR_BUDGET_DECISION = "agentry.budget.decision"  # allow | downgrade | refuse
ATTR_BUDGET_REASON = "agentry.budget.reason"
ATTR_BUDGET_ZONE = "agentry.budget.zone"
ATTR_ROUTE_MODEL = "agentry.route.model"
ATTR_CHANNEL = "agentry.channel"
ATTR_FALLBACKS = "agentry.fallbacks"
ATTR_PHASE = "agentry.phase"

_PROPAGATOR = TraceContextTextMapPropagator()
_state: dict[str, Any] = {}


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether an OTLP endpoint is set (tracing is on)."""
    env = os.environ if env is None else env
    return bool(env.get(ENV_OTLP_ENDPOINT) or env.get(ENV_OTLP_TRACES_ENDPOINT))


def setup_tracing(service_name: str) -> bool:
    """Install the SDK's tracer provider for this process when tracing is configured; True if so.

    `service_name` is the default of OTEL_SERVICE_NAME. Idempotent; the provider is flushed and shut
    down at exit (and by `shutdown_tracing`).
    """
    if not configured() or "provider" in _state:
        return "provider" in _state
    # Imported only when on: an untraced process never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get(ENV_SERVICE_NAME) or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop (idempotent; a no-op when tracing is off)."""
    provider = _state.pop("provider", None)
    if provider is not None:
        provider.shutdown()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None when there is no valid (or sampled-out) one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(HEADER_TRACEPARENT)


def context_from_traceparent(traceparent: str | None) -> otel_context.Context | None:
    """The context continuing `traceparent`; None when it is absent or malformed."""
    if not traceparent:
        return None
    ctx = _PROPAGATOR.extract({HEADER_TRACEPARENT: traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def trace_headers() -> dict[str, str]:
    """{"traceparent": ...} of the current span for an outgoing call, or {} (tracing off). Set per
    call, on the calls that belong to the trace (the model's), not by instrumenting every client: a
    tool's fetch of some web page carries no trace id."""
    parent = current_traceparent()
    return {HEADER_TRACEPARENT: parent} if parent else {}


def trace_annotations() -> dict[str, str]:
    """{ANNOTATION_TRACEPARENT: ...} of the current span, or {} (tracing off: nothing changes)."""
    parent = current_traceparent()
    return {ANNOTATION_TRACEPARENT: parent} if parent else {}


@contextmanager
def span(
    tracer_: trace.Tracer,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: str | None = None,
) -> Iterator[Span]:
    """A span (a child of `parent`, a traceparent, when given; else of the current span), marked as an
    error naming only the exception's type when the block raises: an exception's text may quote a
    prompt or an upstream answer, so it is never recorded."""
    ctx = context_from_traceparent(parent)
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer_.start_as_current_span(
        name, context=ctx, kind=kind, attributes=attrs, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            set_error(current, type(exc).__name__)
            raise


def set_error(current: Span, description: str) -> None:
    """Mark a span failed with a short, secret-free description (a reason, never a payload)."""
    current.set_status(Status(StatusCode.ERROR, description[:200]))
