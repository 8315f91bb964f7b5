"""The operator's side of a run's trace: the provider's lifecycle and the reconcile span.

Registered in the RECONCILE registry at import (handlers/execution.py imports this module): the
tracer provider is installed at start-up when OTEL_EXPORTER_OTLP_ENDPOINT is set, and flushed at
clean-up. A reconcile continues the trace the API started (the Execution's traceparent annotation);
an Execution made without the API (kubectl, a schedule's tick) starts its trace here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from opentelemetry.trace import Span, SpanKind

from agentry_common import tracing

from .registries import RECONCILE

_TRACER = tracing.tracer("agentry.operator")


@kopf.on.startup(registry=RECONCILE)
async def start_tracing(logger: kopf.Logger, **_: object) -> None:
    if tracing.setup_tracing(tracing.SERVICE_OPERATOR):
        logger.info("tracing on: spans exported over OTLP")


@kopf.on.cleanup(registry=RECONCILE)
async def stop_tracing(**_: object) -> None:
    tracing.shutdown_tracing()


def reconcile_attributes(body: dict[str, Any]) -> dict[str, object]:
    meta, spec = body["metadata"], body.get("spec") or {}
    return {
        tracing.ATTR_EXECUTION: meta.get("name"),
        tracing.ATTR_NAMESPACE: meta.get("namespace"),
        tracing.ATTR_AGENT: (spec.get("agentRef") or {}).get("name"),
        tracing.ATTR_CORRELATION_ID: spec.get("correlationId"),
        tracing.ATTR_PHASE: (body.get("status") or {}).get("phase"),
    }


def execution_traceparent(body: dict[str, Any]) -> str | None:
    """The traceparent the API stored on the Execution, if any."""
    return (body["metadata"].get("annotations") or {}).get(tracing.ANNOTATION_TRACEPARENT)


@contextmanager
def reconcile_span(body: dict[str, object]) -> Iterator[Span]:
    """The span of one reconcile that may start the run, in the run's trace when the API began it."""
    with tracing.span(
        _TRACER,
        tracing.SPAN_RECONCILE,
        reconcile_attributes(body),
        kind=SpanKind.INTERNAL,
        parent=execution_traceparent(body),
    ) as current:
        yield current
