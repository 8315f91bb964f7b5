"""An agent's memory through the real API, a governed operator and a real gateway: the owner lists,
writes and deletes entries (`/api/agents/{id}/memory`), the gateway keeps them in the store of the
Agent's uid, the limits answer with the reason and the field, and nobody else reaches them (404);
an agent whose memory is off answers 409 (docs/runs.md, "Memory across runs").

Memory needs the gateway: a control plane of its own with a governed operator and a real gateway
(tests/integration/operator/test_governance.py's), the API on it with the gateway's URL and keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Namespace

from agentry_common.memory import MAX_VALUE_BYTES
from agentry_gateway.memory import Owner
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent
from tests.fixtures.operator import OperatorProcess, own_control_plane
from tests.fixtures.servers import make_namespace, plane_client
from tests.integration.operator.test_governance import KEY, Gateway, gateway_operator, running_gateway

from .helpers import AGENT, create_agent
from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration

MEMORY_AGENT: dict[str, Any] = {**AGENT["spec"], "memory": {"enabled": True, "maxEntries": 2}}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("memory-api-kube")) as found:
        yield found


@pytest.fixture(scope="module")
def gateway(plane: ControlPlane) -> Iterator[Gateway]:
    with running_gateway() as gw:
        yield gw


@pytest.fixture(scope="module")
def governed_operator(
    plane: ControlPlane, gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with gateway_operator(plane, tmp_path_factory.mktemp("memory-api-operator"), gateway) as op:
        yield op


@pytest.fixture(scope="module")
def kube_client(plane: ControlPlane, governed_operator: OperatorProcess) -> Iterator[Client]:
    with plane_client(plane, "memory-api-tests") as client:
        yield client


@pytest.fixture
def namespace(kube_client: Client) -> Iterator[str]:
    name = make_namespace(kube_client, "t")
    yield name
    kube_client.delete(Namespace, name)


@pytest.fixture
def api(firestore_project: str, namespace: str, plane: ControlPlane, gateway: Gateway) -> Iterator[ApiServer]:
    settings = api_settings(
        firestore_project, namespace, str(plane.kubeconfig), gateway_url=gateway.url, token_keys=f"test:{KEY}"
    )
    yield from serve(settings)


def memory_agent(client: httpx.Client) -> str:
    return str(create_agent(client, spec=MEMORY_AGENT)["id"])


def test_the_owner_reads_writes_and_deletes_the_agents_memory(
    api: ApiServer, gateway: Gateway, kube_client: Client, namespace: str
) -> None:
    owner = api.guest()
    agent_id = memory_agent(owner)
    base = f"/api/agents/{agent_id}/memory"
    empty = owner.get(base)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"enabled": True, "maxEntries": 2, "count": 0, "entries": []}

    written = owner.put(f"{base}/city", json={"value": "Seoul"})
    assert written.status_code == 200, written.text
    assert written.json()["updatedBy"].startswith("user:") and written.json()["value"] == "Seoul"
    assert owner.put(f"{base}/style", json={"value": "bullets"}).status_code == 200
    listed = owner.get(base).json()
    assert [(e["key"], e["value"]) for e in listed["entries"]] == [("city", "Seoul"), ("style", "bullets")]

    # The gateway keeps it in the store of the Agent's uid, where its runs read it.
    uid = str(kube_client.get(Agent, agent_id, namespace=namespace).metadata.uid)  # type: ignore[union-attr]
    stored = asyncio.run_coroutine_threadsafe(
        gateway.app.state.gateway.memories.get(Owner(namespace, uid), "city"), gateway.loop
    ).result(10)
    assert stored is not None and stored.value == "Seoul"

    full = owner.put(f"{base}/third", json={"value": "x"})
    assert full.status_code == 409 and "spec.memory.maxEntries" in full.json()["detail"]
    assert owner.put(f"{base}/city", json={"value": "Busan"}).status_code == 200  # a known key fits
    assert owner.delete(f"{base}/style").status_code == 204
    missing = owner.delete(f"{base}/style")
    assert missing.status_code == 404 and "style" in missing.json()["detail"]
    assert owner.get(base).json()["count"] == 1


def test_bad_input_names_the_field(api: ApiServer) -> None:
    owner = api.guest()
    base = f"/api/agents/{memory_agent(owner)}/memory"
    bad_key = owner.put(f"{base}/Not%20A%20Key", json={"value": "v"})
    assert bad_key.status_code == 422 and bad_key.json()["detail"][0]["loc"] == ["path", "key"]
    too_big = owner.put(f"{base}/k", json={"value": "x" * (MAX_VALUE_BYTES + 1)})
    assert too_big.status_code == 422 and too_big.json()["detail"][0]["loc"] == ["body", "value"]
    extra = owner.put(f"{base}/k", json={"value": "v", "updatedBy": "someone else"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "updatedBy"]


def test_nobody_else_reaches_it_and_an_agent_without_memory_answers_409(api: ApiServer) -> None:
    owner, stranger = api.guest(), api.guest()
    agent_id = memory_agent(owner)
    assert owner.put(f"/api/agents/{agent_id}/memory/secret-plan", json={"value": "mine"}).status_code == 200
    for answer in (
        stranger.get(f"/api/agents/{agent_id}/memory"),
        stranger.put(f"/api/agents/{agent_id}/memory/secret-plan", json={"value": "theirs"}),
        stranger.delete(f"/api/agents/{agent_id}/memory/secret-plan"),
    ):
        assert answer.status_code == 404, answer.text
    assert owner.get(f"/api/agents/{agent_id}/memory").json()["entries"][0]["value"] == "mine"

    plain = create_agent(owner)["id"]
    off = owner.get(f"/api/agents/{plain}/memory")
    assert off.status_code == 409 and "spec.memory.enabled" in off.json()["detail"]


def test_the_agents_page_has_a_memory_panel_only_when_memory_is_on(api: ApiServer) -> None:
    owner = api.guest()
    keeper, plain = memory_agent(owner), create_agent(owner)["id"]
    page = owner.get(f"/agents/{keeper}")
    assert page.status_code == 200
    assert f'<section id="memory" data-agent="{keeper}">' in page.text
    assert '<script src="/static/memory.js"></script>' in page.text
    script = owner.get("/static/memory.js")
    assert script.status_code == 200 and "/memory`" in script.text
    other = owner.get(f"/agents/{plain}").text
    assert 'id="memory"' not in other and "memory.js" not in other
