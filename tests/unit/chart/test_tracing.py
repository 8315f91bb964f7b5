"""Chart: tracing values wired as OTEL_* into the API, gateway and operator (and through the operator
into run pods); the opt-in Grafana dashboard and PrometheusRule, built only on metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

import agentry_api.metrics as api_metrics
import agentry_operator.metrics as operator_metrics
from agentry_common import tracing
from agentry_gateway.metrics import Metrics

from .render import Obj, RenderError, env_of, find, one, render

pytestmark = pytest.mark.unit

ENDPOINT = "http://otel-collector.monitoring.svc:4318"
COMPONENTS = {
    "agentry-api": tracing.SERVICE_API,
    "agentry-gateway": tracing.SERVICE_GATEWAY,
    "agentry-operator": tracing.SERVICE_OPERATOR,
}


def container_env(objs: list[Obj], deployment: str) -> dict[str, Any]:
    return env_of(one(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0])


def test_off_by_default_no_otel_variable_and_no_monitoring_object() -> None:
    objs = render()
    for deployment in COMPONENTS:
        assert not [k for k in container_env(objs, deployment) if k.startswith("OTEL_")], deployment
    assert not find(objs, "PrometheusRule")
    assert not [o for o in find(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]


def test_an_endpoint_traces_every_component_with_its_own_name(tmp_path: Path) -> None:
    values = tmp_path / "tracing.yaml"  # --set would make 0.2 a string
    values.write_text(
        json.dumps({"tracing": {"samplerRatio": 0.2, "resourceAttributes": {"team": "platform"}}})
    )
    objs = render([values], tracing__otlpEndpoint=ENDPOINT)
    for deployment, service in COMPONENTS.items():
        env = container_env(objs, deployment)
        assert env[tracing.ENV_OTLP_ENDPOINT] == ENDPOINT, deployment
        assert env[tracing.ENV_SERVICE_NAME] == service
        assert (env[tracing.ENV_SAMPLER], env[tracing.ENV_SAMPLER_ARG]) == ("parentbased_traceidratio", "0.2")
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == "team=platform"


@pytest.mark.parametrize(
    "values",
    [
        {"tracing__otlpEndpoint": "otel-collector:4318"},  # no scheme
        {"tracing__samplerRatio": "1.5"},
        {"tracing__exporter": "zipkin"},  # unknown key
        {"monitoring__prometheusRule__gatewayFailureRatio": "0"},
    ],
)
def test_bad_values_are_refused_naming_them(values: dict[str, str]) -> None:
    with pytest.raises(RenderError) as err:
        render(**values)
    assert next(iter(values)).split("__")[-1] in str(err.value)


def exposed_metric_names() -> set[str]:
    """Every sample name the components serve (counters with _total, histograms with _bucket, ...)."""
    metrics = [m for mod in (api_metrics, operator_metrics) for m in vars(mod).values()]
    metrics += list(vars(Metrics()).values())
    names: set[str] = set()
    for metric in metrics:
        if not isinstance(metric, MetricWrapperBase):
            continue
        family, kind = metric._name, metric._type
        names |= {family, f"{family}_total"} if kind == "counter" else {family}
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    return names


def family_of(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        name = name.removesuffix(suffix)
    return name


def used_metrics(text: str) -> set[str]:
    return set(re.findall(r"\bagentry_[a-z_]+", text))


def test_alerts_and_dashboard_use_only_metrics_that_exist() -> None:
    objs = render(monitoring__dashboard__enabled="true", monitoring__prometheusRule__enabled="true")
    rule = one(objs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) >= 6 and all(r["alert"].startswith("Agentry") and r["expr"] for r in alerts)
    dashboard = one(objs, "ConfigMap", "agentry-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["agentry.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    exposed = exposed_metric_names()
    used = used_metrics(" ".join(r["expr"] for r in alerts)) | used_metrics(" ".join(exprs))
    assert used and used <= exposed, sorted(used - exposed)
    # Every metric family shows up somewhere on the dashboard.
    missing = {family_of(n) for n in exposed} - {family_of(n) for n in used_metrics(" ".join(exprs))}
    assert not missing, sorted(missing)
