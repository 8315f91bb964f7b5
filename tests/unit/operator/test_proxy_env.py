"""Run pods and the egress proxy: every tool is pointed at it, the gateway stays direct."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_common import constants as c
from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

EXECUTION: dict[str, Any] = {
    "metadata": {"name": "run-1", "namespace": "w", "uid": "u-1"},
    "spec": {"agentRef": {"name": "a"}},
}
AGENT: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {"instructions": "x", "model": {"name": "m"}}}
PROXY = "http://agentry-egress.agentry.svc:3128"


def env_of(config: Settings) -> dict[str, str]:
    token = "run-1-token" if config.governed else None
    job = build_job(EXECUTION, AGENT, "corr", config, token_secret=token)
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_every_proxy_variable_names_the_proxy_and_the_gateway_is_direct() -> None:
    config = Settings(
        egress_proxy_url=PROXY, gateway_url="http://agentry-gateway.agentry.svc:8090", token_keys="k1:secret"
    )
    env = env_of(config)
    for name in (c.ENV_EGRESS_PROXY, "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == PROXY, name
    assert env["NO_PROXY"] == env["no_proxy"] == "agentry-gateway.agentry.svc,localhost,127.0.0.1"


def test_without_a_proxy_no_proxy_variable_is_set() -> None:
    env = env_of(Settings())
    assert not {c.ENV_EGRESS_PROXY, "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} & set(env)
