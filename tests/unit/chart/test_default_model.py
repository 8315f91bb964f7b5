"""operator.defaultModel: documented, schema-checked, rendered into the operator's env; and `make dev`
sets it explicitly."""

from __future__ import annotations

from typing import Any, cast

import pytest
import yaml

from agentry_common.models import DEFAULT_MODEL
from agentry_localcluster.install import Install, Providers
from agentry_operator.config import OperatorConfig

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
    assert OperatorConfig(default_model=env["AGENTRY_DEFAULT_MODEL"]).default_model == value


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
