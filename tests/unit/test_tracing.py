"""Tracing helpers (agentry_common.tracing) and the run pod's trace contract (builders/job.py).

The SDK's in-memory exporter stands in for the collector here: these check our setup and
propagation helpers, not the export (tests/integration/api/test_tracing.py sends to a real one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentry_common import tracing
from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings
from agentry_operator.tracing import execution_traceparent, reconcile_attributes

pytestmark = pytest.mark.unit

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
EXECUTION: dict[str, Any] = {
    "metadata": {"name": "run-1", "namespace": "w", "uid": "u-1"},
    "spec": {"agentRef": {"name": "a"}, "correlationId": "corr"},
}
AGENT: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {"instructions": "x", "model": {"name": "m"}}}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    """A real SDK provider exporting to memory, private to the test (never the global one)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def test_off_unless_an_otlp_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracing.ENV_OTLP_ENDPOINT, raising=False)
    monkeypatch.delenv(tracing.ENV_OTLP_TRACES_ENDPOINT, raising=False)
    assert not tracing.configured()
    assert tracing.setup_tracing("x") is False
    assert tracing.configured({tracing.ENV_OTLP_ENDPOINT: "http://collector:4318"})
    assert tracing.configured({tracing.ENV_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces"})
    # Off: the no-op tracer's spans carry no context, so nothing is annotated or sent.
    with tracing.span(tracing.tracer("t"), "noop"):
        assert tracing.current_traceparent() is None
        assert tracing.trace_annotations() == {} and tracing.trace_headers() == {}


def test_a_span_continues_a_traceparent_and_hands_on_its_own(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracing.span(tracer, "child", {"a": 1, "dropped": None}, parent=PARENT) as span:
        own = tracing.current_traceparent()
        assert tracing.trace_annotations() == {tracing.ANNOTATION_TRACEPARENT: own}
        assert tracing.trace_headers() == {"traceparent": own}
    (done,) = exporter.get_finished_spans()
    assert done.context.trace_id == int(PARENT.split("-")[1], 16)
    assert done.parent is not None and done.parent.span_id == int(PARENT.split("-")[2], 16)
    assert own == f"00-{PARENT.split('-')[1]}-{done.context.span_id:016x}-01"
    assert dict(done.attributes or {}) == {"a": 1}
    assert span is not None


@pytest.mark.parametrize(
    "bad", [None, "", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01"]
)
def test_a_missing_or_malformed_traceparent_starts_a_new_trace(
    bad: str | None, tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    assert tracing.context_from_traceparent(bad) is None
    with tracing.span(tracer, "root", parent=bad):
        pass
    (done,) = exporter.get_finished_spans()
    assert done.parent is None


def test_a_failing_block_marks_the_span_with_the_type_only(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError), tracing.span(tracer, "boom"):
        raise ValueError("the prompt said sk-secret-123")
    (done,) = exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR and done.status.description == "ValueError"
    assert not done.events  # no exception event: its text may quote a prompt or a key


def test_the_operator_continues_the_apis_trace_and_names_the_run() -> None:
    body = {
        **EXECUTION,
        "metadata": {**EXECUTION["metadata"], "annotations": {tracing.ANNOTATION_TRACEPARENT: PARENT}},
    }
    assert execution_traceparent(body) == PARENT
    assert execution_traceparent(EXECUTION) is None
    attrs = reconcile_attributes(body)
    assert attrs[tracing.ATTR_EXECUTION] == "run-1" and attrs[tracing.ATTR_AGENT] == "a"
    assert attrs[tracing.ATTR_CORRELATION_ID] == "corr"


def env_of(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_run_pods_get_the_collector_and_their_parent_span_when_tracing_is_on() -> None:
    config = Settings(
        otlp_endpoint="http://otel.monitoring.svc:4318",
        traces_sampler="parentbased_traceidratio",
        traces_sampler_arg="0.25",
        egress_proxy_url="http://proxy:3128",
    )
    job = build_job(EXECUTION, AGENT, "corr", config, traceparent=PARENT)
    env = env_of(job)
    assert env[tracing.ENV_OTLP_ENDPOINT] == "http://otel.monitoring.svc:4318"
    assert env[tracing.ENV_SERVICE_NAME] == tracing.SERVICE_RUNTIME
    assert env[tracing.ENV_TRACEPARENT] == PARENT
    assert (env[tracing.ENV_SAMPLER], env[tracing.ENV_SAMPLER_ARG]) == ("parentbased_traceidratio", "0.25")
    assert job["metadata"]["annotations"][tracing.ANNOTATION_TRACEPARENT] == PARENT
    assert job["spec"]["template"]["metadata"]["annotations"][tracing.ANNOTATION_TRACEPARENT] == PARENT
    assert "otel.monitoring.svc" in env["NO_PROXY"].split(",")  # spans do not go through the proxy


def test_a_resumed_run_continues_the_trace_stored_on_its_execution() -> None:
    config = Settings(otlp_endpoint="http://otel:4318")
    annotated = {
        **EXECUTION,
        "metadata": {**EXECUTION["metadata"], "annotations": {tracing.ANNOTATION_TRACEPARENT: PARENT}},
    }
    assert env_of(build_job(annotated, AGENT, "corr", config))[tracing.ENV_TRACEPARENT] == PARENT


def test_without_tracing_the_pod_is_exactly_as_before() -> None:
    plain = build_job(EXECUTION, AGENT, "corr", Settings())
    annotated = {
        **EXECUTION,
        "metadata": {**EXECUTION["metadata"], "annotations": {tracing.ANNOTATION_TRACEPARENT: PARENT}},
    }
    off = build_job(annotated, AGENT, "corr", Settings(), traceparent=PARENT)
    assert env_of(off) == env_of(plain)
    assert not [k for k in env_of(off) if k.startswith("OTEL_") or k == tracing.ENV_TRACEPARENT]
    assert off["metadata"]["annotations"] == plain["metadata"]["annotations"]
    assert tracing.ANNOTATION_TRACEPARENT not in off["spec"]["template"]["metadata"]["annotations"]
