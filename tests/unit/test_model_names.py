"""Model names Agentry pre-fills or shows as examples are current: priced, and not deprecated by the SDK."""

from __future__ import annotations

import re

import pytest
import yaml
from anthropic.resources.messages.messages import DEPRECATED_MODELS

from agentry_api.settings import Settings
from agentry_common import pricing
from agentry_common.models import DEFAULT_MODEL, AgentSpec, Provider, parse_model
from agentry_localcluster.kube import REPO

pytestmark = pytest.mark.unit

WEB = REPO / "api" / "agentry_api" / "web"


def current(name: str) -> bool:
    return pricing.is_priced(name) and name not in DEPRECATED_MODELS


def prefilled_names() -> dict[str, str]:
    names = {"DEFAULT_MODEL": parse_model(DEFAULT_MODEL).name}
    names["AGENTRY_CHAT_MODEL default"] = str(Settings.model_fields["chat_model"].default)
    form = (WEB / "templates" / "agent_form.html").read_text()
    names["dashboard form"] = re.findall(r"else '([^']+)'", form)[0]
    router = (REPO / "api" / "agentry_api" / "routers" / "agents.py").read_text()
    names["API example"] = re.findall(r'"name": "(claude-[^"]+)"', router)[0]
    for path in sorted((REPO / "manifests" / "samples").glob("agent-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            model = doc["spec"].get("model")
            if model and model.get("provider", "anthropic") == "anthropic":
                names[path.name] = model["name"]
    return names


@pytest.mark.parametrize(("where", "name"), sorted(prefilled_names().items()))
def test_prefilled_model_is_current(where: str, name: str) -> None:
    assert current(name), f"{where}: {name} is unpriced or deprecated"


def test_the_dashboard_script_prefills_no_model() -> None:
    """An empty model field means the installation's default; the script adds no name of its own."""
    script = (WEB / "static" / "app.js").read_text()
    assert not re.search(r"claude-[a-z0-9-]+", script)


def test_parse_model() -> None:
    assert parse_model("openai/gpt-4.1-mini").label == "openai/gpt-4.1-mini"
    assert parse_model(" claude-sonnet-4-6 ").provider is Provider.ANTHROPIC
    assert parse_model("openai/org/model").name == "org/model"  # local servers' names may hold "/"
    for bad in ("acme/x", "anthropic/", ""):
        with pytest.raises(ValueError, match="model"):
            parse_model(bad)


def test_model_is_optional_in_the_spec_and_the_crd() -> None:
    crd = yaml.safe_load((REPO / "manifests" / "crds" / "agentry.dev_agents.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["required"] == ["instructions"]
    assert schema["status"]["properties"]["model"]["type"] == "string"
    columns = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Model"] == ".status.model"
    assert AgentSpec.model_validate({"instructions": "x"}).model is None
