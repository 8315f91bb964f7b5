"""Usage aggregation (`services.usage`) over the API's real Firestore store on Google's emulator: the
window query (user filter, `createdAt >=`, field selection) is Firestore's, the sums are the API's.
Runs with prompt-cache usage beside runs that never reported it: `GET /api/usage`, the usage page
and a run's page show cached against uncached input and the saving, to their owner only."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentry_api.auth import User
from agentry_api.services.usage import usage
from agentry_api.storage.store import Store, new_client
from agentry_localcluster.kube import ControlPlane

from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 5, 10, 12, 30, tzinfo=dt.UTC)
USER = User("u", "guest", "cookie")
DOCS: list[dict[str, Any]] = [
    {
        "id": "ns-a-1",
        "agentId": "a",
        "phase": "Succeeded",
        "createdAt": "2026-05-10T11:10:00.000000Z",
        "usage": {"inputTokens": 100, "outputTokens": 10, "costUSD": "0.5"},
    },
    {
        "id": "ns-a-2",
        "agentId": "a",
        "phase": "Failed",
        "createdAt": "2026-05-10T12:05:00.000000Z",
        "usage": {"inputTokens": 1, "outputTokens": 1, "costUSD": "0.25"},
    },
    {
        "id": "ns-a-3",
        "agentId": "a",
        "phase": "Succeeded",
        "createdAt": "2026-05-10T12:20:00.000000Z",
        "usage": {
            "inputTokens": 10000,
            "outputTokens": 100,
            "cacheReadTokens": 8000,
            "cacheWriteTokens": 1000,
            "costUSD": "0.25",
            "uncachedCostUSD": "1.25",
            "model": "claude-sonnet-4-6",
        },
    },
    {
        "id": "ns-b-1",
        "agentId": "b",
        "phase": "Running",
        "createdAt": "2026-05-09T13:00:00.000000Z",
        "usage": None,
    },
    {
        "id": "ns-c-1",
        "agentId": "c",
        "phase": "Succeeded",
        "createdAt": "2026-05-01T00:00:00.000000Z",
        "usage": {"inputTokens": 5, "outputTokens": 5, "costUSD": "9"},
    },
]


@pytest.fixture
async def store(firestore_project: str) -> AsyncIterator[Store]:
    s = Store(new_client(firestore_project))
    for doc in DOCS:
        await s.put_execution({**doc, "userId": USER.id})
    # Another user's run in the same window: never counted for USER.
    await s.put_execution(
        {
            "id": "other-1",
            "userId": "someone-else",
            "agentId": "a",
            "phase": "Succeeded",
            "createdAt": "2026-05-10T12:00:00.000000Z",
            "usage": {"inputTokens": 1000, "outputTokens": 1000, "costUSD": "100"},
        }
    )
    yield s
    await s.close()


async def test_usage_sums_per_agent_and_bucket(store: Store) -> None:
    out = await usage(store, USER, "24h", NOW)
    assert out.executions == 4 and out.costUSD == "1" and out.inputTokens == 10101
    assert [(a.agentId, a.succeeded, a.failed) for a in out.agents] == [("a", 2, 1), ("b", 0, 0)]
    assert len(out.buckets) == 24 and sum(b.executions for b in out.buckets) == 4
    assert out.buckets[-1].start == "2026-05-10T12:00:00.000000Z" and out.buckets[-1].costUSD == "0.5"
    week = await usage(store, USER, "30d", NOW)
    assert week.executions == 5 and week.costUSD == "10"
    assert json.loads(week.model_dump_json())["window"] == "30d"


async def test_cached_input_and_the_saving_beside_runs_that_never_reported_them(store: Store) -> None:
    out = await usage(store, USER, "24h", NOW)
    assert (out.cacheReadTokens, out.cacheWriteTokens, out.uncachedInputTokens) == (8000, 1000, 1101)
    # Only the cached run saved (1.25 - 0.25); the others count at their cost.
    assert out.uncachedCostUSD == "2" and out.savingUSD == "1" and out.savingPercent == 50.0
    [a] = [x for x in out.agents if x.agentId == "a"]
    assert (a.cacheReadTokens, a.uncachedInputTokens, a.savingUSD) == (8000, 1101, "1")
    by_model = {m.model: m for m in out.models}
    assert by_model["claude-sonnet-4-6"].savingPercent == 80.0 and by_model["unknown"].savingUSD == "0"
    assert out.buckets[-1].cacheReadTokens == 8000 and out.buckets[-1].savingUSD == "1"
    assert out.buckets[-2].savingUSD == "0" and out.buckets[-2].uncachedInputTokens == 100


@pytest.fixture
def api(firestore_project: str, namespace: str, kube: ControlPlane, crds: None) -> Iterator[ApiServer]:
    server = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig)))
    yield server
    server.stop()


def seed(project: str, docs: list[dict[str, Any]]) -> None:
    async def write() -> None:
        s = Store(new_client(project))
        for doc in docs:
            await s.put_execution(doc)
        await s.close()

    asyncio.run(write())


def test_the_api_and_the_dashboard_show_cached_input_and_the_saving(api: ApiServer) -> None:
    alice, bob = api.guest(), api.guest()
    alice_id, bob_id = alice.get("/api/me").json()["id"], bob.get("/api/me").json()["id"]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cached, old = DOCS[2], DOCS[0]
    seed(
        api.settings.google_cloud_project,
        [
            {**cached, "id": "alice-cached", "userId": alice_id, "createdAt": now},
            {**old, "id": "alice-old", "userId": alice_id, "createdAt": now},
            {**cached, "id": "bob-cached", "userId": bob_id, "createdAt": now},
        ],
    )

    body = alice.get("/api/usage", params={"window": "24h"}).json()
    assert body["executions"] == 2 and body["costUSD"] == "0.75" and body["uncachedCostUSD"] == "1.75"
    assert (body["cacheReadTokens"], body["cacheWriteTokens"], body["uncachedInputTokens"]) == (
        8000,
        1000,
        1100,
    )
    assert body["savingUSD"] == "1" and body["savingPercent"] == pytest.approx(57.1)
    [agent] = body["agents"]
    assert (agent["savingUSD"], agent["cacheReadTokens"]) == ("1", 8000)
    assert sum(b["cacheReadTokens"] for b in body["buckets"]) == 8000
    assert bob.get("/api/usage", params={"window": "24h"}).json()["executions"] == 1  # his own run only

    browser = {"Accept": "text/html,application/xhtml+xml"}
    page = alice.get("/usage", params={"window": "24h"}, headers=browser)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = html.unescape(page.text)
    assert '<span id="usage-cached">8000</span>' in text and '<span id="usage-saving">1</span>' in text
    assert '<span id="usage-saving-percent">57.1</span>% of $1.75 without caching' in text
    assert 'id="input-chart"' in text and '"label": "cache reads"' in text
    assert "$1 (57.1%)" in text  # the agent's row

    run_page = html.unescape(alice.get("/executions/alice-cached", headers=browser).text)
    assert (
        '<span id="cache-read">8000</span>' in run_page and '<span id="cache-write">1000</span>' in run_page
    )
    assert '<span id="saving">$1</span>' in run_page
    old_page = html.unescape(alice.get("/executions/alice-old", headers=browser).text)
    assert '<span id="cache-read">0</span>' in old_page and '<span id="saving">—</span>' in old_page
    assert alice.get("/api/executions/alice-cached").json()["usage"]["savingUSD"] == "1"
    assert bob.get("/executions/alice-cached", headers=browser).status_code == 404
