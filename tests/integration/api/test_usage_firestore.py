"""Usage aggregation (`services.usage`) over the API's real Firestore store on Google's emulator: the
window query (user filter, `createdAt >=`, field selection) is Firestore's, the sums are the API's."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentry_api.auth import User
from agentry_api.services.usage import usage
from agentry_api.storage.store import Store, new_client

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
    assert out.executions == 3 and out.costUSD == "0.75" and out.inputTokens == 101
    assert [(a.agentId, a.succeeded, a.failed) for a in out.agents] == [("a", 1, 1), ("b", 0, 0)]
    assert len(out.buckets) == 24 and sum(b.executions for b in out.buckets) == 3
    assert out.buckets[-1].start == "2026-05-10T12:00:00.000000Z" and out.buckets[-1].costUSD == "0.25"
    week = await usage(store, USER, "30d", NOW)
    assert week.executions == 4 and week.costUSD == "9.75"
    assert json.loads(week.model_dump_json())["window"] == "30d"
