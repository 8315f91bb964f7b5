"""The runs' work queue (agentry_operator/controller/queue.py): each key once, oldest first, within the
limit; a key added while it is reconciled comes back once after; requeue-after and back-off timers."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from agentry_operator.controller.queue import MAX_RETRY_SECONDS, RETRY_SECONDS, Queue, backoff

pytestmark = pytest.mark.unit

Key = tuple[str, str]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Key, bool]] = []
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def reconcile(self, key: Key, again: bool) -> None:
        self.calls.append((key, again))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
            if key[1] == "broken":
                raise RuntimeError("boom")
        finally:
            self.running -= 1


async def settle(queue: Queue[Key]) -> None:
    """Until every worker has ended (they end when the queue is empty)."""
    for _ in range(10):
        await asyncio.sleep(0)
        if queue._workers:
            await asyncio.gather(*queue._workers)


def test_backoff_doubles_from_five_seconds_up_to_five_minutes() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [RETRY_SECONDS, 10.0, 20.0, 40.0]
    assert backoff(30) == MAX_RETRY_SECONDS
    assert backoff(0) == 5 and backoff(7) == 300 and backoff(100) == 300


async def test_each_key_once_oldest_first_within_the_limit() -> None:
    queue, rec = Queue[Key](limit=3), Recorder()
    keys = [("ns", f"run-{i}") for i in range(10)]
    for key in keys:
        queue.add(key)
    queue.run(rec.reconcile)  # what was queued before the queue ran starts now
    for key in keys[5:]:  # more events of the waiting runs: nothing more
        queue.add(key)
    await asyncio.sleep(0.05)
    assert rec.running == 3 and queue.waiting == 7
    rec.release.set()
    await settle(queue)
    assert [key for key, _ in rec.calls] == keys and rec.most == 3


async def test_a_key_added_while_reconciled_comes_back_once_after() -> None:
    queue, rec = Queue[Key](), Recorder()
    queue.run(rec.reconcile)
    queue.add(("ns", "a"))
    await asyncio.sleep(0.01)
    for _ in range(3):  # events while it is reconciled (it may have read the object before them)
        queue.add(("ns", "a"))
    rec.release.set()
    await settle(queue)
    assert rec.calls == [(("ns", "a"), False), (("ns", "a"), False)]


async def test_a_timer_brings_the_key_back_as_again_and_the_earlier_timer_wins() -> None:
    queue, rec = Queue[Key](), Recorder()
    rec.release.set()
    queue.run(rec.reconcile)
    queue.add_after(("ns", "a"), 0.05)
    queue.add_after(("ns", "a"), 30)  # later: the earlier one stays
    scheduled = queue.scheduled(("ns", "a"))
    assert scheduled is not None and scheduled < 1
    queue.add_after(("ns", "b"), 30)
    queue.forget(("ns", "b"))  # gone: its timer too
    assert queue.scheduled(("ns", "b")) is None
    await asyncio.sleep(0.2)
    await settle(queue)
    assert rec.calls == [(("ns", "a"), True)]


async def test_failures_back_off_until_a_success_resets_them() -> None:
    queue = Queue[Key]()
    key = ("ns", "a")
    assert [queue.failed(key) for _ in range(3)] == [5.0, 10.0, 20.0]
    scheduled = queue.scheduled(key)
    assert scheduled is not None and 4 < scheduled <= 5  # the earliest timer stays
    queue.succeeded(key)
    assert queue.failed(key) == 5.0
    queue.cancel()
    assert queue.scheduled(key) is None


async def test_a_failing_reconcile_is_logged_backs_off_and_the_rest_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, rec = Queue[Key](limit=1), Recorder()
    rec.release.set()
    queue.run(rec.reconcile)
    with caplog.at_level(logging.ERROR):
        for name in ("broken", "after"):
            queue.add(("ns", name))
        await settle(queue)
    assert [key for key, _ in rec.calls] == [("ns", "broken"), ("ns", "after")]
    assert "reconcile of ('ns', 'broken') failed" in caplog.text
    scheduled = queue.scheduled(("ns", "broken"))
    assert scheduled is not None and scheduled > 4
    queue.cancel()


async def test_workers_do_not_keep_the_context_that_queued_them() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="empty")
    seen: list[str] = []

    async def reconcile(key: Key, again: bool) -> None:
        seen.append(marker.get())

    queue = Queue[Key]()
    queue.run(reconcile)
    marker.set("watch event")
    queue.add(("ns", "run"))
    await settle(queue)
    assert seen == ["empty"]


async def test_an_execution_event_queues_only_a_run_that_needs_work() -> None:
    from agentry_operator.handlers.execution import on_execution
    from agentry_operator.handlers.state import State
    from agentry_operator.settings import Settings

    def run(name: str, status: dict[str, str], cancel: bool = False) -> dict[str, object]:
        meta = {"name": name, "namespace": "ns", "uid": f"u-{name}"}
        return {"metadata": meta, "spec": {"agentRef": {"name": "a"}, "cancel": cancel}, "status": status}

    state, log = State(), logging.getLogger("test")
    bodies = [
        run("new", {}),
        run("running", {"phase": "Running", "jobName": "j"}),
        run("ended", {"phase": "Succeeded", "jobName": "j"}),
        run("cancelled", {"phase": "Running", "jobName": "j"}, cancel=True),
    ]
    for body in bodies:
        await on_execution(None, Settings(), state, state.seen_execution(body), log)  # type: ignore[arg-type]
    assert list(state.queue._queued) == [("ns", "new"), ("ns", "cancelled")]
    # Listed after a restart: a running run's Job is read again (with the others), not queued.
    await on_execution(None, Settings(), state, state.executions[("ns", "running")], log, listing=True)  # type: ignore[arg-type]
    assert ("ns", "running") in state.resync_at and ("ns", "running") not in state.queue._queued
