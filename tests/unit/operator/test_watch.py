"""The operator's own watch (agentry_operator/controller/informer.py): lines, events, order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import pytest

from agentry_operator import kube
from agentry_operator.context import OperatorContext, store
from agentry_operator.controller import informer as watch_module
from agentry_operator.controller.informer import (
    Expired,
    Serial,
    Unauthorized,
    Watch,
    is_tombstone,
    lines,
    parse,
)
from agentry_operator.handlers.state import State
from agentry_operator.run_events import watching
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit


def test_lines_are_whole_across_chunks_and_any_length() -> None:
    big = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "p"}, "x": "y" * 200_000}}).encode()
    buffer = bytearray()
    got = lines(buffer, big[:1000]) + lines(buffer, big[1000:] + b'\n{"a"') + lines(buffer, b": 1}\n\n")
    assert got == [big, b'{"a": 1}']  # a line of 200 kB (aiohttp's line reader stops at 64 KiB)
    assert buffer == bytearray()


def test_an_event_its_type_and_object() -> None:
    kind, obj = parse(b'{"type": "MODIFIED", "object": {"metadata": {"name": "j", "resourceVersion": "7"}}}')
    assert (kind, obj["metadata"]["resourceVersion"]) == ("MODIFIED", "7")


def test_an_expired_version_lists_again_and_other_errors_raise() -> None:
    with pytest.raises(Expired):
        parse(b'{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}')
    with pytest.raises(RuntimeError, match="500"):
        parse(b'{"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}}')


async def test_events_of_one_object_in_order_of_others_at_once() -> None:
    seen: list[tuple[str, str | None]] = []
    gates = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def handler(event: str | None, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if event == "ADDED":
            await gates[name].wait()  # the first event of each object is slow
        if event == "BAD":
            raise ValueError("a handler's failure")
        seen.append((name, event))

    serial = Serial(handler)
    meta = {
        "a": {"metadata": {"namespace": "n", "name": "a"}},
        "b": {"metadata": {"namespace": "n", "name": "b"}},
    }
    tasks = [
        serial.submit("ADDED", meta["a"]),
        serial.submit("BAD", meta["a"]),
        serial.submit("MODIFIED", meta["a"]),
        serial.submit("ADDED", meta["b"]),
        serial.submit(None, meta["b"]),
    ]
    gates["b"].set()  # b goes on while a waits
    await asyncio.wait(tasks[3:])
    assert seen == [("b", "ADDED"), ("b", None)]
    gates["a"].set()
    await asyncio.wait(tasks)
    assert seen[2:] == [("a", "ADDED"), ("a", "MODIFIED")]  # a's failed event logged, the next went on
    assert serial._last == {} and serial._pending == set()  # nothing kept once done


async def test_cancelled_no_queued_event_of_an_object_is_handled() -> None:
    handled: list[str | None] = []
    gate = asyncio.Event()

    async def handler(event: str | None, obj: dict[str, Any]) -> None:
        await gate.wait()
        handled.append(event)

    serial = Serial(handler)
    obj = {"metadata": {"namespace": "n", "name": "a"}}
    tasks = [serial.submit(kind, obj) for kind in ("ADDED", "MODIFIED", "MODIFIED")]
    await asyncio.sleep(0)
    serial.cancel()
    gate.set()
    await asyncio.wait(tasks)
    assert handled == [] and all(task.cancelled() for task in tasks)


class _Scripted(Watch):
    """A Watch whose requests follow a script: what each `_watch` does in turn (its listing and
    credentials counted). The loop's decisions are what is tested; the requests have their own test
    against the real API server (tests/integration/operator/test_watch.py)."""

    def __init__(self, script: list[BaseException | str]) -> None:
        super().__init__(None, None, None, {}, "ns", _nothing)  # type: ignore[arg-type]
        self.script: list[BaseException | str] = script
        self.calls: list[str] = []

    def __post_init__(self) -> None:
        self.name = "scripted"
        self._serial = Serial(_nothing)

    async def _list(self) -> str:
        self.calls.append("list")
        return "10"

    async def _refresh(self) -> None:
        self.calls.append("refresh")

    async def _watch(self, since: str) -> str:
        self.calls.append(f"watch {since}")
        step = self.script.pop(0) if self.script else asyncio.CancelledError()
        if isinstance(step, BaseException):
            raise step
        return step


async def _nothing(event: str | None, obj: dict[str, Any]) -> None:
    return None


async def test_the_loop_lists_again_only_when_expired_and_otherwise_goes_on_from_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_module, "BACKOFF", (0.0,) * 6)
    scripted = _Scripted(["11", RuntimeError("connection reset"), Expired("gone"), Unauthorized(), "12"])
    with pytest.raises(asyncio.CancelledError):
        await scripted.run()
    assert scripted.calls == [
        "list",
        "watch 10",  # -> 11
        "watch 11",  # failed: again from 11, no listing
        "watch 11",  # expired: listed again
        "list",
        "watch 10",  # unauthorized: credentials, then again
        "refresh",
        "watch 10",  # -> 12
        "watch 12",
    ]


async def test_a_watch_that_ended_fails_the_liveness_probe() -> None:
    memo = kopf.Memo()
    ctx = OperatorContext(config=Settings(), client=None, state=State())  # type: ignore[arg-type]
    store(memo, ctx)
    forever = asyncio.create_task(asyncio.sleep(3600), name="watch executions")
    ended = asyncio.create_task(asyncio.sleep(0), name="watch pods in every namespace")
    ctx.watches = [forever, ended]
    await ended
    with pytest.raises(kopf.PermanentError, match="watch pods"):
        await watching(memo)
    ctx.watches = [forever]
    assert await watching(memo) == 1
    forever.cancel()


class _Pages:
    """The API server's answers to a watch's listings, one page each."""

    def __init__(self, *pages: list[tuple[str, str]]) -> None:
        self.pages = list(pages)

    async def get(self, path: str) -> bytes:
        items = [
            {"metadata": {"namespace": "ns", "name": name, "uid": uid, "labels": {"run": name}}}
            for name, uid in self.pages.pop(0)
        ]
        return json.dumps({"items": items, "metadata": {"resourceVersion": "5"}}).encode()


@pytest.mark.parametrize("namespace", ["ns", None])
async def test_a_listing_again_hands_on_a_tombstone_for_each_object_gone_meanwhile(
    namespace: str | None,
) -> None:
    """A 410 lists again: an object deleted while no watch was open would otherwise stay in the
    handlers' caches for good (an Agent's totals counted such a run twice). In one namespace's watch
    or every namespace's (objects named differently in its memory)."""
    seen: list[tuple[str | None, str, str, bool]] = []
    listings: list[int] = []

    async def handler(event: str | None, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        seen.append((event, meta["name"], meta["uid"], is_tombstone(obj)))
        assert meta["namespace"] == "ns" and meta["labels"] == {"run": meta["name"]}  # tombstones too
        assert not is_tombstone(obj) or set(meta) == {"name", "namespace", "uid", "labels"}

    pages = _Pages([("a", "1"), ("b", "1"), ("c", "1")], [("b", "2"), ("d", "1")])
    listed = lambda: listings.append(len(seen))  # noqa: E731
    keep = (("labels", "run"),)  # what a tombstone carries besides its name, namespace and uid
    watch = Watch(None, pages, kube.Execution, {}, namespace, handler, listed, keep)  # type: ignore[arg-type]
    assert await watch._list() == "5"
    assert listings == [3]  # called once the listing's objects were handled
    gone = {"metadata": {"namespace": "ns", "name": "c", "uid": "1", "labels": {"run": "c"}}}
    await watch._hand_on("DELETED", gone)  # seen by the watch
    seen.clear()
    await watch._list()
    b = [event for event in seen if event[1] == "b"]
    assert b == [("DELETED", "b", "1", True), (None, "b", "2", False)]  # b replaced: the old one went first
    assert set(seen) - set(b) == {("DELETED", "a", "1", True), (None, "d", "1", False)}  # not c
    assert listings == [3, 4]


def test_a_tombstone_carries_the_uid_and_kept_fields_the_object_had() -> None:
    """One string per object remembers them (an annotation's value may hold anything: it goes last)."""
    meta = {
        "name": "r1",
        "uid": "u-1",
        "labels": {"pool": "p"},
        "annotations": {"agentry.dev/execution": "ex\x00odd", "other": "x"},
    }
    keep = (("labels", "pool"), ("labels", "absent"), ("annotations", "agentry.dev/execution"))
    seen = watch_module.remembered(meta, keep)
    gone = watch_module.tombstone(("ns", "r1"), seen, keep)
    assert is_tombstone(gone) and watch_module.uid_of(seen) == "u-1"
    assert gone["metadata"] == {
        "name": "r1",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"pool": "p"},
        "annotations": {"agentry.dev/execution": "ex\x00odd"},
    }
    # Without kept fields the uid alone is remembered: the string a cached copy of the object holds.
    alone = watch_module.remembered(meta, ())
    assert alone == "u-1" and alone is watch_module.remembered({"uid": "".join(["u-", "1"])}, ())
    assert watch_module.tombstone(("", "r1"), alone, ())["metadata"] == {"name": "r1", "uid": "u-1"}
