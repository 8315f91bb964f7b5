"""One trace per run, received by a real OpenTelemetry Collector: the API request that creates the
run, the operator's reconcile, the runtime's run, turns and tool call, and the gateway's decision and
provider call, linked parent to child, with the GenAI attributes and nothing secret in them."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Secret

from agentry_common import tracing
from agentry_common.resources import Execution
from agentry_localcluster import localhttp
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.otelcol import Collector
from agentry_localcluster.procs import Proc, start_with_ports
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, start_operator
from tests.fixtures.servers import make_namespace, plane_client
from tests.integration.workspace.harness import prepare, run_pod

from .helpers import create_agent, run
from .server import api_settings, start_api

pytestmark = pytest.mark.integration

KEY = "t" * 40
UPSTREAM_KEY = "sk-ant-upstream-secret-for-tracing-0123456789"
MODEL = "claude-sonnet-4-5"
INPUT = "Please echo the magic word xyzzy-input."
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}  # the batch processor's interval, milliseconds


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "otelcol").start()
    yield c
    c.stop()


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


class Gateway:
    """`python -m agentry_gateway`: a process of its own, so its spans carry its own service.name."""

    def __init__(self, workdir: Path, llm: ScriptedLLM, collector: Collector) -> None:
        self.workdir, self.llm, self.collector = workdir, llm, collector
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Gateway:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "governance.yaml"
        channel = {
            "name": "anthropic",
            "protocol": "anthropic",
            "baseURL": self.llm.url,
            "apiKeyEnv": "GW_KEY",
        }
        config.write_text(json.dumps({"channels": [channel]}))
        self.config = config
        return start_with_ports("the gateway", 1, lambda ports: self._launch(ports[0]), host="127.0.0.1")

    def _launch(self, port: int) -> Gateway:
        self.port = port
        env = {
            "AGENTRY_GATEWAY_HOST": "127.0.0.1",
            "AGENTRY_GATEWAY_PORT": str(port),
            "AGENTRY_GATEWAY_LEDGER": "memory",
            "AGENTRY_GATEWAY_CONFIG_FILE": str(self.config),
            "AGENTRY_TOKEN_KEYS": f"test:{KEY}",
            "GW_KEY": UPSTREAM_KEY,
            tracing.ENV_OTLP_ENDPOINT: self.collector.endpoint,
            **FAST_EXPORT,
        }
        argv = [sys.executable, "-m", "agentry_gateway"]
        self.proc = Proc("agentry-gateway", argv, self.workdir / "gateway.log", env=env).start()
        self.proc.wait_ready(
            lambda: localhttp.get(f"{self.url}/readyz", timeout=1).is_success, 30, "ready", ports=(port,)
        )
        return self


@pytest.fixture
def gateway(tmp_path: Path, llm: ScriptedLLM, collector: Collector) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "gateway", llm, collector).start()
    yield gw
    gw.proc.stop()


@pytest.fixture
def traced_operator(
    tmp_path: Path, private_plane: ControlPlane, gateway: Gateway, collector: Collector
) -> Iterator[OperatorProcess]:
    """A governed operator exporting its spans."""
    op = start_operator(
        private_plane,
        tmp_path / "operator",
        AGENTRY_GATEWAY_URL=gateway.url,
        AGENTRY_TOKEN_KEYS=f"test:{KEY}",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        **FAST_EXPORT,
    )
    yield op
    op.proc.stop()


def job_of(client: Client, ns: str, name: str) -> Job:
    def found() -> Job | None:
        job = (client.get(Execution, name, namespace=ns).status or {}).get("jobName")
        return client.get(Job, job, namespace=ns) if job else None

    job: Job = eventually(found, 60, f"the Job of {name}")
    return job


def pod_env(client: Client, ns: str, job: Job) -> dict[str, str]:
    """The run container's environment as the kubelet would give it (secretKeyRefs resolved)."""
    assert job.spec is not None and job.spec.template.spec is not None
    out: dict[str, str] = {}
    for var in job.spec.template.spec.containers[0].env or []:
        if var.value is not None:
            out[var.name] = var.value
        elif var.valueFrom is not None and var.valueFrom.secretKeyRef is not None:
            ref = var.valueFrom.secretKeyRef
            secret = client.get(Secret, ref.name, namespace=ns)
            out[var.name] = base64.b64decode((secret.data or {})[ref.key]).decode()
    return out


def one_trace(collector: Collector, execution: str) -> list[dict[str, Any]]:
    """The spans of the trace the run's spans are in, once the runtime's and the gateway's are there."""

    def complete() -> list[dict[str, Any]] | None:
        spans = collector.spans()
        ids = {s["traceId"] for s in spans if s["attrs"].get(tracing.ATTR_EXECUTION) == execution}
        trace = [s for s in spans if s["traceId"] in ids]
        services = {s["service"] for s in trace}
        need = {
            tracing.SERVICE_API,
            tracing.SERVICE_OPERATOR,
            tracing.SERVICE_RUNTIME,
            tracing.SERVICE_GATEWAY,
        }
        # Both calls' server spans and their provider calls (a child ends, and may be exported, first).
        gateway = [s["kind"] for s in trace if s["service"] == tracing.SERVICE_GATEWAY]
        both = gateway.count(2) >= 2 and gateway.count(3) >= 2
        return trace if need <= services and both else None

    spans: list[dict[str, Any]] = eventually(complete, 30, "the run's spans at the collector")
    return spans


def named(spans: list[dict[str, Any]], service: str, prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["service"] == service and s["name"].startswith(prefix)]


def test_a_run_is_one_trace_from_the_api_to_the_provider(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    firestore_project: str,
    private_plane: ControlPlane,
    collector: Collector,
    llm: ScriptedLLM,
    gateway: Gateway,
    traced_operator: OperatorProcess,
) -> None:
    llm.script(
        [
            {
                "tool_use": {"name": "shell", "input": {"command": "echo xyzzy-output"}},
                "usage": {"input_tokens": 120, "output_tokens": 30},
            },
            {"text": "Echoed.", "usage": {"input_tokens": 200, "output_tokens": 10}},
        ]
    )
    # The API runs in this process (as every API test does): its tracer provider is this process's.
    monkeypatch.setenv(tracing.ENV_OTLP_ENDPOINT, collector.endpoint)
    for name, value in FAST_EXPORT.items():
        monkeypatch.setenv(name, value)
    with plane_client(private_plane, "tracing-tests") as kube:
        ns = make_namespace(kube, "trace")
        api = start_api(api_settings(firestore_project, ns, str(private_plane.kubeconfig)))
        try:
            guest = api.guest()
            spec = {"instructions": "Echo what you are asked.", "model": {"name": MODEL}, "tools": ["shell"]}
            agent = create_agent(guest, name="Tracer", spec=spec)
            execution = run(guest, agent["id"], INPUT)["execution"]
            job = job_of(kube, ns, execution)
            env = pod_env(kube, ns, job)
            cr = kube.get(Execution, execution, namespace=ns)
        finally:
            api.stop()
            tracing.shutdown_tracing()  # the API's spans leave now

    # The API stored its span's context on the Execution.
    stored = (cr.metadata.annotations or {}) if cr.metadata else {}
    assert stored.get(tracing.ANNOTATION_TRACEPARENT, "").startswith("00-"), stored
    # The pod's contract: the reconcile's span context and the collector, by the standard names.
    assert env[tracing.ENV_OTLP_ENDPOINT] == collector.endpoint
    assert env[tracing.ENV_SERVICE_NAME] == tracing.SERVICE_RUNTIME
    traceparent = env[tracing.ENV_TRACEPARENT]
    assert job.metadata is not None and job.metadata.annotations is not None
    assert job.metadata.annotations[tracing.ANNOTATION_TRACEPARENT] == traceparent

    # The runtime as the pod runs it, with the Job's environment and the Agent snapshot it was given.
    keep = ("OTEL_", "TRACEPARENT", "ANTHROPIC_", "AGENTRY_CORRELATION_ID", "AGENTRY_AGENT")
    pod = prepare(
        tmp_path / "pod",
        spec,
        llm_url=gateway.url,
        input_text=INPUT,
        execution=execution,
        env={k: v for k, v in env.items() if k.startswith(keep)},
    )
    result = run_pod(tmp_path / "pod", pod)
    assert result.code == 0, result.explain()
    assert result.result["stopReason"] == "end_turn"

    spans = one_trace(collector, execution)
    assert len({s["traceId"] for s in spans}) == 1
    by_id = {s["spanId"]: s for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parentSpanId"]]

    # API: the request's server span, the Execution's creation under it.
    (create,) = named(spans, tracing.SERVICE_API, tracing.SPAN_CREATE_EXECUTION)
    assert parent(create)["kind"] == 2 and "runs" in parent(create)["name"]  # SERVER: POST .../runs
    assert create["attrs"][tracing.ATTR_EXECUTION] == execution
    # Operator: the reconcile that made the Job, a child of the API's span; the pod continues it.
    reconciles = named(spans, tracing.SERVICE_OPERATOR, tracing.SPAN_RECONCILE)
    assert reconciles and all(parent(r) is create for r in reconciles)
    started = by_id[traceparent.split("-")[2]]
    assert started in reconciles
    # Runtime: the run under that reconcile; two turns and the tool call under the run.
    (run_span,) = named(spans, tracing.SERVICE_RUNTIME, tracing.OP_INVOKE_AGENT)
    assert parent(run_span) is started
    assert run_span["attrs"][tracing.ATTR_STOP_REASON] == "end_turn"
    turns = sorted(
        named(spans, tracing.SERVICE_RUNTIME, "chat "), key=lambda s: s["attrs"][tracing.ATTR_TURN]
    )
    assert [t["name"] for t in turns] == [f"chat {MODEL}"] * 2
    assert all(parent(t) is run_span and t["kind"] == 3 for t in turns)  # CLIENT
    first = turns[0]["attrs"]
    assert first[tracing.GEN_AI_OPERATION] == "chat"
    assert first[tracing.GEN_AI_PROVIDER] == first[tracing.GEN_AI_SYSTEM] == "anthropic"
    assert first[tracing.GEN_AI_REQUEST_MODEL] == MODEL and first[tracing.GEN_AI_RESPONSE_MODEL]
    assert (first[tracing.GEN_AI_INPUT_TOKENS], first[tracing.GEN_AI_OUTPUT_TOKENS]) == (120, 30)
    assert turns[1]["attrs"][tracing.GEN_AI_INPUT_TOKENS] == 200
    (tool,) = named(spans, tracing.SERVICE_RUNTIME, "execute_tool")
    assert tool["name"] == "execute_tool shell" and tool["attrs"][tracing.GEN_AI_TOOL_NAME] == "shell"
    assert parent(tool) is run_span
    # Gateway: each turn's call (the turn's client span sends the trace context) is a server span
    # holding the budget decision, with the provider call as its child.
    served = [s for s in spans if s["service"] == tracing.SERVICE_GATEWAY and s["kind"] == 2]
    assert sorted(parent(s)["spanId"] for s in served) == sorted(t["spanId"] for t in turns)
    for call in served:
        assert call["attrs"][tracing.ATTR_BUDGET_DECISION] == "allow"
        assert call["attrs"][tracing.ATTR_EXECUTION] == execution
        (upstream,) = [s for s in spans if s.get("parentSpanId") == call["spanId"] and s["kind"] == 3]
        assert upstream["name"] == f"chat {MODEL}"
        assert upstream["attrs"][tracing.ATTR_CHANNEL] == "anthropic"
        assert upstream["attrs"][tracing.GEN_AI_INPUT_TOKENS] in (120, 200)
    # The provider got the trace context of the gateway's call.
    assert all(r.headers.get("traceparent", "").split("-")[1] == spans[0]["traceId"] for r in llm.requests)
    # Ids, names and counts only: no prompt, tool output, run token or provider key.
    values = json.dumps([s["attrs"] for s in spans])
    for secret in ("xyzzy", env["ANTHROPIC_API_KEY"], UPSTREAM_KEY, KEY):
        assert secret not in values
