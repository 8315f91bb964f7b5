"""The runtime's client of the gateway's checkpoint routes: retries through a gateway restart, stops on
409, gives up the journal on 413, reads every page."""

from __future__ import annotations

import json

import httpx
import pytest

from agentry_common.checkpoints import CHECKPOINT_PATH, Signed, sign
from agentry_workspace import checkpoints
from agentry_workspace.checkpoints import Fenced, GatewayStore, Refused
from agentry_workspace.config import ConfigError

pytestmark = pytest.mark.unit


def _entry(seq: int) -> Signed:
    return sign("k", "", seq, "begin", {"pod": "p", "resumed": False})


def _store(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> GatewayStore:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.AsyncClient(
        base_url="http://gw", transport=httpx.MockTransport(handle), headers={"authorization": "Bearer t"}
    )
    return GatewayStore("http://gw", "t", client=client)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoints, "BACKOFF_START", 0.001)


async def test_an_append_is_retried_through_5xx_and_network_errors() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"detail": "restarting"}),
        httpx.Response(200, json={"last": 1}),
    ]
    await _store(answers, seen).append([_entry(1)])
    assert len(seen) == 3 and all(r.url.path == CHECKPOINT_PATH for r in seen)
    assert json.loads(seen[-1].content)["entries"][0]["seq"] == 1  # the same batch each time


async def test_409_fences_and_413_refuses() -> None:
    seen: list[httpx.Request] = []
    store = _store(
        [
            httpx.Response(409, json={"detail": "ahead", "last": 7}),
            httpx.Response(413, json={"detail": "full"}),
        ],
        seen,
    )
    with pytest.raises(Fenced) as fenced:
        await store.append([_entry(1)])
    assert fenced.value.last == 7
    with pytest.raises(Refused, match="413 full"):
        await store.append([_entry(1)])


async def test_every_page_is_read_and_a_refusal_names_the_status() -> None:
    seen: list[httpx.Request] = []
    page = {"namespace": "n", "execution": "e", "uid": "u", "last": 2}
    store = _store(
        [
            httpx.Response(200, json={**page, "entries": [_entry(1).entry.wire()], "more": True}),
            httpx.Response(200, json={**page, "entries": [_entry(2).entry.wire()], "more": False}),
            httpx.Response(403, json={"detail": "ended"}),
        ],
        seen,
    )
    assert [e.seq for e in await store.read()] == [1, 2]
    assert seen[1].url.params["after"] == "1"
    with pytest.raises(ConfigError, match="parent's journal: HTTP 403 ended"):
        await store.read(parent=True)
    assert seen[2].url.params["of"] == "parent"
