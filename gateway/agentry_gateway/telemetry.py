"""The gateway's spans: the budget decision on the request's span, a client span per provider call.

Ids, names, counts and the decision's reason (which names a budget and its use, never a prompt).
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from agentry_common import tracing

from .calls import Call

UNTRACED_PATHS = "healthz,readyz,metrics"


def instrument(app: FastAPI) -> None:
    """Spans for the app's requests when tracing is configured (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    if tracing.setup_tracing(tracing.SERVICE_GATEWAY):
        FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_PATHS)


def record_decision(call: Call) -> None:
    """The budget's decision on the current (request) span."""
    claims, decision = call.claims, call.decision
    trace.get_current_span().set_attributes(
        {
            tracing.ATTR_BUDGET_DECISION: decision.action.value,
            tracing.ATTR_BUDGET_ZONE: decision.zone.value,
            tracing.ATTR_BUDGET_REASON: decision.reason[:300],
            tracing.GEN_AI_REQUEST_MODEL: call.requested_model,
            tracing.ATTR_ROUTE_MODEL: call.model,
            tracing.ATTR_NAMESPACE: claims.namespace,
            tracing.ATTR_EXECUTION: claims.execution,
            tracing.ATTR_AGENT: claims.agent,
            tracing.ATTR_CORRELATION_ID: call.correlation_id,
        }
    )
