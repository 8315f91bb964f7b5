"""The queue of runs to start (handlers/starts.py): each key once, oldest first, never more than the
limit at once, workers gone when the queue is empty, and a failing start does not stop the others."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from agentry_operator.handlers.starts import Starts
from agentry_operator.handlers.state import Key, Logger

pytestmark = pytest.mark.unit

LOG = logging.getLogger("test")


class Recorder:
    def __init__(self) -> None:
        self.order: list[Key] = []
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def start(self, key: Key, logger: Logger) -> None:
        self.order.append(key)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
            if key[1] == "broken":
                raise RuntimeError("boom")
        finally:
            self.running -= 1


async def settle(starts: Starts) -> None:
    """Until every worker has ended (they end when the queue is empty)."""
    await asyncio.sleep(0)
    await asyncio.gather(*starts._workers)


def test_each_key_once_oldest_first_within_the_limit() -> None:
    async def scenario() -> None:
        starts, rec = Starts(limit=3), Recorder()
        keys = [("ns", f"run-{i}") for i in range(10)]
        for key in keys:
            starts.add(key, LOG, rec.start)
        for key in keys:  # more events of the same runs while they wait or start: nothing more
            starts.add(key, LOG, rec.start)
        await asyncio.sleep(0.05)
        assert rec.running == 3 and starts.waiting == 7
        rec.release.set()
        await settle(starts)
        assert rec.order == keys
        assert rec.most == 3
        starts.add(keys[0], LOG, rec.start)  # ended: a later event queues it again
        await settle(starts)
        assert rec.order == [*keys, keys[0]]

    asyncio.run(scenario())


def test_a_failing_start_is_logged_and_the_rest_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        starts, rec = Starts(limit=1), Recorder()
        rec.release.set()
        for name in ("broken", "after"):
            starts.add(("ns", name), LOG, rec.start)
        await settle(starts)
        assert rec.order == [("ns", "broken"), ("ns", "after")]

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert "starting execution ns/broken failed" in caplog.text


def test_workers_do_not_keep_the_context_that_queued_them() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="empty")
    seen: list[str] = []

    async def start(key: Key, logger: Logger) -> None:
        seen.append(marker.get())

    async def scenario() -> None:
        starts = Starts()
        marker.set("kopf handler")
        starts.add(("ns", "run"), LOG, start)
        await settle(starts)

    asyncio.run(scenario())
    assert seen == ["empty"]
