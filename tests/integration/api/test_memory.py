"""An agent's memory through the real API, a governed operator and a real gateway: the owner lists,
writes and deletes entries (`/api/agents/{id}/memory`), the gateway keeps them in the store of the
Agent's uid, the limits answer with the reason and the field, and nobody else reaches them (404);
an agent whose memory is off answers 409 (docs/runs.md, "Memory across runs").

Memory needs the gateway: a control plane of its own with a governed operator and a real gateway
(tests/integration/operator/test_governance.py's), the API on it with the gateway's URL and keys."""

# ruff: noqa: F811  (test_follow_ups.py's fixtures, imported: its governed plane, gateway and operator)

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from lightkube import Client

from agentry_common.memory import MAX_VALUE_BYTES
from agentry_gateway.memory import Owner
from agentry_operator.kube import Agent
from tests.integration.operator.test_governance import Gateway

from .helpers import AGENT, create_agent
from .server import ApiServer
from .test_follow_ups import (  # noqa: F401  (the module's fixtures: a governed plane of its own)
    gateway,
    gateway_api,
    governed_operator,
    kube_client,
    namespace,
    plane,
)

pytestmark = pytest.mark.integration

MEMORY_AGENT: dict[str, Any] = {**AGENT["spec"], "memory": {"enabled": True, "maxEntries": 2}}  # type: ignore[dict-item]


@pytest.fixture
def api(gateway_api: ApiServer) -> ApiServer:
    return gateway_api


def memory_agent(client: httpx.Client) -> str:
    return str(create_agent(client, spec=MEMORY_AGENT)["id"])


def test_the_owner_reads_writes_and_deletes_the_agents_memory(
    api: ApiServer,
    gateway: Gateway,
    kube_client: Client,
    namespace: str,
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
