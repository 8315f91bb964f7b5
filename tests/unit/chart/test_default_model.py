"""operator.defaultModel: documented, schema-checked, rendered into the operator's env; and `make dev`
sets it explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from agentry_common.models import DEFAULT_MODEL
from agentry_localcluster.install import Install, Providers
from agentry_operator.settings import Settings

from .render import CHART, RenderError, env_of, one, render

pytestmark = pytest.mark.unit


def operator_env(**set_: str) -> dict[str, Any]:
    deployment = one(render(**set_), "Deployment", "agentry-operator")
    return env_of(deployment["spec"]["template"]["spec"]["containers"][0])


def test_chart_default_is_the_operators_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operator"]["defaultModel"] == DEFAULT_MODEL
    assert operator_env()["AGENTRY_DEFAULT_MODEL"] == DEFAULT_MODEL
    text = (CHART / "values.yaml").read_text()
    assert "AGENTRY_DEFAULT_MODEL" in text.split("defaultModel:")[0].rsplit("# --", 1)[1]  # documented


@pytest.mark.parametrize("value", ["openai/gpt-4.1-mini", "claude-haiku-4-5", ""])
def test_chart_renders_the_configured_default(value: str) -> None:
    env = operator_env(operator__defaultModel=value)
    assert env["AGENTRY_DEFAULT_MODEL"] == value
    assert Settings(default_model=env["AGENTRY_DEFAULT_MODEL"]).default_model == value


@pytest.mark.parametrize("value", ["acme/model", "anthropic/", "two words", "x" * 129])
def test_schema_refuses_a_malformed_default(value: str) -> None:
    with pytest.raises(RenderError, match="defaultModel"):
        render(operator__defaultModel=value)


def _dev(providers: Providers) -> dict[str, Any]:
    install = Install(cluster=cast(Any, None), firestore_host="10.244.0.1:8681", providers=providers)
    values: dict[str, Any] = install.values()
    return values


def test_make_dev_sets_the_default_model_explicitly() -> None:
    assert _dev(Providers(anthropic_key="k"))["operator"]["defaultModel"] == DEFAULT_MODEL
    assert _dev(Providers())["operator"]["defaultModel"] == DEFAULT_MODEL
    local = Providers(openai_key="k", openai_base_url="http://localhost:11434/v1", openai_model="qwen3")
    assert _dev(local)["operator"]["defaultModel"] == "openai/qwen3"


@pytest.mark.parametrize(("gateway", "proxy"), [(True, True), (True, False), (False, False)])
def test_make_dev_deploys_the_gateway_and_the_proxy_only_when_asked(
    tmp_path: Path, gateway: bool, proxy: bool
) -> None:
    """The chart deploys both by default; an install without them must not start pods whose images
    `make dev` did not build (found when a benchmark installed without the gateway)."""
    install = Install(
        cluster=cast(Any, None), firestore_host="10.244.0.1:8681", gateway=gateway, egress_proxy=proxy
    )
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(install.values()))
    deployments = {o["metadata"]["name"] for o in render(values=[values]) if o["kind"] == "Deployment"}
    assert ("agentry-gateway" in deployments) is gateway
    assert ("agentry-egress" in deployments) is proxy
