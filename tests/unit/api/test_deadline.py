"""The request deadline: a handler that does not start answering in time is cancelled with a 503;
one that has started (a stream) runs on past it."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from agentry_api.deadline import RequestDeadline

pytestmark = pytest.mark.unit


async def slow_then_answer(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(float(scope["path"].strip("/") or 0))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def answer_then_stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"a", b"b", b"c"):
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def get(app: RequestDeadline, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path)


def test_a_handler_past_its_deadline_gets_a_503_with_retry_after() -> None:
    r = asyncio.run(get(RequestDeadline(slow_then_answer, seconds=0.2), "/2"))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["reason"] == "Unavailable"


def test_a_quick_answer_and_a_started_stream_are_untouched() -> None:
    assert asyncio.run(get(RequestDeadline(slow_then_answer, seconds=1), "/0")).text == "ok"
    streamed = asyncio.run(get(RequestDeadline(answer_then_stream, seconds=0.1), "/"))
    assert (streamed.status_code, streamed.text) == (200, "abc")


def test_the_handler_is_cancelled_at_the_deadline_and_its_own_timeouts_are_its_own() -> None:
    seen: list[str] = []

    async def hangs(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def times_out(scope: Scope, receive: Receive, send: Send) -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    assert asyncio.run(get(RequestDeadline(hangs, seconds=0.1), "/")).status_code == 503
    assert seen == ["cancelled"]
    with pytest.raises(TimeoutError):  # a handler's own timeout is an error of its own, not a 503
        asyncio.run(get(RequestDeadline(times_out, seconds=5), "/"))


def test_past_the_deadline_the_answer_is_the_503_however_the_cancelled_handler_ends() -> None:
    async def turns_it_into_an_error(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("a client library's own error for a cancelled call") from None

    async def swallows_it(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)

    async def answers_anyway(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        await slow_then_answer(scope, receive, send)

    for handler in (turns_it_into_an_error, swallows_it):
        answer = asyncio.run(get(RequestDeadline(handler, seconds=0.1), "/"))
        assert answer.status_code == 503 and answer.json()["reason"] == "Unavailable", handler.__name__
    # One that answers after its cancellation is answering: its answer goes out, as it started.
    assert asyncio.run(get(RequestDeadline(answers_anyway, seconds=0.1), "/")).text == "ok"
