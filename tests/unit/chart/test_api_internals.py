"""No internals to strangers, as the chart installs the API: the OpenAPI document off unless an admin
turns it on (make dev does), and the metrics on a port of their own, behind a Service of their own that
the Ingress never routes; the OIDC sign-in link of the sign-in page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from agentry_api.settings import Settings as ApiSettings
from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS
from agentry_localcluster.install import Install

from .render import Obj, RenderError, env_of, find, one, render

pytestmark = pytest.mark.unit
API, METRICS = "agentry-api", "agentry-api-metrics"


def api_container(objs: list[Obj]) -> Obj:
    container: Obj = one(objs, "Deployment", API)["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render()


def test_openapi_is_off_and_metrics_have_their_own_port_by_default(
    default: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    container = api_container(default)
    env = env_of(container)
    assert env["AGENTRY_OPENAPI"] == "false" and env["AGENTRY_METRICS_PORT"] == "9090"
    tcp = {p["name"]: p["containerPort"] for p in container["ports"] if p["protocol"] == "TCP"}
    assert tcp == {"http": 8000, "metrics": 9090}
    # The Service users reach (and an Ingress routes) carries the API's port only.
    assert [p["targetPort"] for p in one(default, "Service", API)["spec"]["ports"]] == ["http"]
    metrics = one(default, "Service", METRICS)
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert metrics["spec"]["selector"] == one(default, "Service", API)["spec"]["selector"]
    # And the API reads them so.
    for name in ("AGENTRY_OPENAPI", "AGENTRY_METRICS_PORT"):
        monkeypatch.setenv(name, env[name])
    settings = ApiSettings()
    assert settings.openapi is False and settings.metrics_port == 9090


def test_the_api_keeps_idle_connections_as_long_as_the_gateway(default: list[Obj]) -> None:
    # uvicorn's own 5 s would race every client that keeps a connection 5 s (httpx) or 600 s (a load
    # balancer): the request sent as the server closes fails with "server disconnected".
    assert f"--timeout-keep-alive={SERVER_KEEP_ALIVE_SECONDS}" in api_container(default)["command"]


def test_the_ingress_routes_only_the_api_port() -> None:
    objs = render(api__ingress__enabled="true")
    for rule in one(objs, "Ingress", API)["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": API, "port": {"name": "http"}}


def test_an_admin_turns_openapi_on_and_metrics_off_or_elsewhere() -> None:
    annotation: dict[str, Any] = {"api.metrics.serviceAnnotations.prometheus\\.io/path": "/metrics"}
    objs = render(api__openapi__enabled="true", api__metrics__port="9191", **annotation)
    env = env_of(api_container(objs))
    assert env["AGENTRY_OPENAPI"] == "true" and env["AGENTRY_METRICS_PORT"] == "9191"
    metrics = one(objs, "Service", METRICS)
    assert metrics["metadata"]["annotations"] == {"prometheus.io/path": "/metrics"}
    assert metrics["spec"]["ports"][0]["port"] == 9191
    off = render(api__metrics__enabled="false")
    assert env_of(api_container(off))["AGENTRY_METRICS_PORT"] == "0"
    assert find(off, "Service", METRICS) == []
    assert "metrics" not in [p["name"] for p in api_container(off)["ports"]]


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"api.openapi.enabled": "yes"}, "enabled"),
        ({"api.metrics.port": "0"}, "port"),
        ({"api.metrics.extra": "1"}, "extra"),
    ],
)
def test_schema_refuses_bad_internals_switches(sets: dict[str, str], error: str) -> None:
    flat: dict[str, Any] = {k.replace(".", "__"): v for k, v in sets.items()}
    with pytest.raises(RenderError, match=re.escape(error)):
        render(**flat)


def test_the_oidc_sign_in_link_goes_with_the_issuer() -> None:
    flat: dict[str, Any] = {"api__oidc__issuer": "https://issuer.example", "api__oidc__audience": "agentry"}
    assert "AGENTRY_OIDC_SIGNIN_URL" not in env_of(api_container(render(**flat)))
    objs = render(**flat, api__oidc__signinUrl="https://agentry.example.com/oauth2/start")
    assert (
        env_of(api_container(objs))["AGENTRY_OIDC_SIGNIN_URL"] == "https://agentry.example.com/oauth2/start"
    )


def test_make_dev_turns_openapi_on(tmp_path: Path) -> None:
    values = Install(cluster=cast(Any, None), firestore_host="10.244.0.1:8681").values()
    assert values["api"]["openapi"] == {"enabled": True}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    env = env_of(api_container(render(values=[path])))
    assert env["AGENTRY_OPENAPI"] == "true" and env["AGENTRY_METRICS_PORT"] == "9090"
