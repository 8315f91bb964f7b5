"""Steering a live run, in the runtime against the gateway's own inbox rules (its in-memory store):
a message delivered at the next turn boundary (and once only, also after a resume), a message queued
at the final answer making the run go on, an interrupt ending the turn before its remaining calls and
then ending the run or waiting for the next message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from agentry_common.checkpoints import RIDING_STORED_HEADER, AppendAnswer, Close, Entry, Signed
from agentry_common.governance import RefusalType
from agentry_common.models import DoubleTexting
from agentry_common.steering import INBOX_SEEN_HEADER, Inbox, SteerRequest
from agentry_common.tokens import Claims
from agentry_gateway.budgets import Calendar, Thresholds
from agentry_gateway.calls import Rejected
from agentry_gateway.checkpoints import MemoryCheckpointStore, RunRef
from agentry_gateway.checkpoints.boundary import check_boundary, store_riding
from agentry_gateway.checkpoints.inbox import InboxRefused
from agentry_gateway.ledger import MemoryLedger
from agentry_gateway.metrics import Metrics
from agentry_llm import ChatRequest, ChatResponse, ProviderError, ToolResultBlock
from agentry_workspace import journal
from agentry_workspace.checkpoints import JournalWriter
from agentry_workspace.durable import Durable
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner
from agentry_workspace.steering import closing

from .fakes import API_KEY, make_config, text, tool
from .test_durable_turns import KEY, CountingTool

pytestmark = pytest.mark.unit

RUN = RunRef("team-a", "uid-1", "ex-1", "tester")
CLAIMS = Claims(typ="run", exp=0, namespace="team-a", execution="ex-1", execution_uid="uid-1", agent="tester")
LEDGER = MemoryLedger([], Calendar("UTC"), Thresholds(), 86400)  # no budgets: the run has not ended


def spawn(coro: Coroutine[Any, Any, int | None], what: str) -> asyncio.Task[int | None]:
    return asyncio.create_task(coro)


class GatewayInMemory:
    """The runtime's Store over the gateway's in-memory checkpoint store (the real inbox rules)."""

    def __init__(self) -> None:
        self.gw = MemoryCheckpointStore()
        self.inbox_reads = 0

    async def read(self, *, parent: bool = False) -> list[Entry]:
        return (await self.gw.read(RUN, 0)).entries

    async def append(
        self,
        entries: list[Signed],
        *,
        delivered: list[int] | None = None,
        close: Close | None = None,
        beside: bool = False,
    ) -> AppendAnswer:
        done = await self.gw.append(RUN, [e.entry for e in entries], delivered or [], close)
        return AppendAnswer(last=done.last, inbox=done.inbox, closed=done.closed)

    async def inbox(self, after: int, wait: int = 0) -> Inbox:
        self.inbox_reads += 1
        for _ in range(int(wait / 0.02) + 1):
            box = await self.gw.inbox(RUN, after)
            if box.messages or not wait:
                return box
            await asyncio.sleep(0.02)
        return box

    async def aclose(self) -> None:
        return None

    def post(
        self, text: str = "", *, interrupt: bool = False, pending: DoubleTexting = DoubleTexting.QUEUE
    ) -> Any:
        req = SteerRequest(
            namespace="team-a",
            execution="ex-1",
            uid="uid-1",
            text=text,
            by="ada",
            interrupt=interrupt,
            pending=pending,
        )
        return asyncio.ensure_future(self.gw.post(RUN, req))

    def entries(self) -> list[Entry]:
        return [e for e, _ in self.gw.journals[RUN.doc_id].entries]


class Scripted:
    """Answers by turn; `during[turn]` runs while that turn's model call is in flight (a person
    sends a message meanwhile), `before[turn]` before it reaches the gateway. With `store`, a call is
    first handled as the gateway handles it (its own functions): the entries riding it stored, and
    the call refused (`refused`) while a message is queued beyond the one it names."""

    name = "anthropic/claude-sonnet-4-6"
    model = "claude-sonnet-4-6"
    endpoint = "fake"

    def __init__(
        self,
        script: list[ChatResponse],
        during: dict[int, Callable[[], Any]] | None = None,
        before: dict[int, Callable[[], Any]] | None = None,
    ) -> None:
        self.script, self.during, self.before = script, during or {}, before or {}
        self.requests: list[ChatRequest] = []
        self.store: GatewayInMemory | None = None
        self.refused = 0

    async def complete(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        if len(self.requests) + 1 in self.before:
            await self.before[len(self.requests) + 1]()
        said = await self._at_gateway(request)
        self.requests.append(request.model_copy(deep=True))
        turn = len(self.requests)
        if turn in self.during:
            await self.during[turn]()
        return self.script[min(turn, len(self.script)) - 1].model_copy(update={"gateway": said})

    async def _at_gateway(self, request: ChatRequest) -> dict[str, str]:
        if self.store is None:
            return {}
        riding = store_riding(self.store.gw, LEDGER, Metrics(), CLAIMS, request.headers, spawn)
        last = await riding.stored() if riding is not None else None  # the gateway: beside the call
        try:
            await check_boundary(self.store.gw, CLAIMS, request.headers)
        except Rejected as exc:
            self.refused += 1
            kind = RefusalType.STEERING_QUEUED.value
            raise ProviderError("queued", provider=self.name, status=409, final=True, kind=kind) from exc
        return {RIDING_STORED_HEADER: str(last)} if last is not None else {}

    async def aclose(self) -> None:
        return None


def runner(
    tmp_path: Path, store: GatewayInMemory, provider: Scripted, steering: dict[str, Any] | None = None
) -> tuple[Runner, dict[str, int], RecordingSink]:
    cfg = make_config(tmp_path, {"tools": ["files"], "steering": steering or {}})
    sink = RecordingSink(correlation_id="c", execution="ex-1", secrets=[API_KEY])
    r = Runner(cfg, sink, providers=[provider])
    provider.store = store
    counts: dict[str, int] = {}
    r.tools["count"] = CountingTool(counts)
    r.durable = Durable(JournalWriter(store, KEY, sink, parent_keys=[], parent_name=""))
    return r, counts, sink


def texts(request: ChatRequest) -> str:
    return " ".join(m.text() for m in request.messages)


async def test_a_message_is_delivered_at_the_next_turn_boundary_once(tmp_path: Path) -> None:
    store = GatewayInMemory()
    posted: list[Any] = []

    async def send() -> None:
        posted.append(await store.post("Also count d."))

    provider = Scripted(
        [tool("count", {"key": "a"}, id="t1"), tool("count", {"key": "d"}, id="t2"), text("done")], {1: send}
    )
    r, counts, sink = runner(tmp_path, store, provider)
    outcome = await r.run()
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1, "d": 1}
    # The second model call sees the message, after the first call's result; the first did not.
    assert "Also count d." not in texts(provider.requests[0])
    second = provider.requests[1].messages[-1]
    assert isinstance(second.content[0], ToolResultBlock)
    assert second.text().endswith("[A message from ada, sent while you were working]\nAlso count d.")
    assert texts(provider.requests[2]).count("Also count d.") == 1
    box = await store.gw.inbox(RUN, 0, every=True)
    assert [m.state.value for m in box.messages] == ["delivered"] and box.closed
    kinds = [e.kind for e in store.entries()]
    assert kinds.count("steer") == 1 and sink.of("steered")
    # A resumed pod rebuilds the same conversation from the journal (the message in it, once).
    replayed = journal.replay(store.entries())
    assert (
        replayed.steered == 1
        and texts(ChatRequest(system="", messages=replayed.messages, max_tokens=1)).count("Also count d.")
        == 1
    )


async def test_a_message_sent_during_a_tool_call_goes_with_its_result(tmp_path: Path) -> None:
    """No append's answer has told of the message by the boundary (the result is stored during the
    next model call): the gateway refuses that call, and the call made again carries the result and
    the message, not a turn later."""
    store = GatewayInMemory()
    provider = Scripted([tool("count", {"key": "a"}, id="t1"), text("done"), text("done, with it")])
    r, counts, _ = runner(tmp_path, store, provider)
    counting = r.tools["count"]
    original = counting.run

    async def run(args: Any, ctx: Any) -> Any:
        await store.post("Also count d.")  # after the call's intent was stored
        return await original(args, ctx)

    counting.run = run  # type: ignore[method-assign]
    outcome = await r.run()
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1}
    assert len(provider.requests) == 2, [texts(q) for q in provider.requests]
    assert provider.refused == 1  # the call without the message, refused before it was answered
    last = provider.requests[1].messages[-1]
    assert isinstance(last.content[0], ToolResultBlock)
    assert last.text().endswith("Also count d.")


async def test_a_message_queued_at_the_final_answer_makes_the_run_go_on(tmp_path: Path) -> None:
    store = GatewayInMemory()

    async def send() -> None:
        await store.post("Now do it for Friday.")

    provider = Scripted([text("done for Monday"), text("done for Friday")], {1: send})
    r, _, _ = runner(tmp_path, store, provider)
    outcome = await r.run()
    assert outcome.summary == "done for Friday" and len(provider.requests) == 2
    assert provider.requests[1].messages[-1].role == "user"
    assert "Now do it for Friday." in provider.requests[1].messages[-1].text()
    # The run's last append closed the inbox: a message now is refused (the API makes a follow-up).
    with pytest.raises(InboxRefused, match="ended"):
        await store.post("too late")


async def test_without_messages_the_inbox_is_never_read(tmp_path: Path) -> None:
    store = GatewayInMemory()
    provider = Scripted([tool("count", {"key": "a"}, id="t1"), text("done")])
    r, _, _ = runner(tmp_path, store, provider)
    assert (await r.run()).stop_reason is StopReason.END_TURN
    assert store.inbox_reads == 0  # the append answers said so: no extra round trip


class InboxUnreadable(GatewayInMemory):
    """The run's inbox reads are refused (answered empty, as the runtime's store answers a refusal)."""

    async def inbox(self, after: int, wait: int = 0) -> Inbox:
        self.inbox_reads += 1
        return Inbox()


async def test_a_refused_call_whose_message_cannot_be_read_is_made_again_unchecked(tmp_path: Path) -> None:
    """Steering is never a reason to stop a run: a refusal the inbox cannot answer does not loop."""
    store = InboxUnreadable()

    async def send() -> None:
        await store.post("Also count d.")

    provider = Scripted([tool("count", {"key": "a"}, id="t1"), text("done")], {1: send})
    r, counts, _ = runner(tmp_path, store, provider)
    outcome = await r.run()
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1}
    assert provider.refused == 1 and len(provider.requests) == 2  # once refused, then unchecked
    assert INBOX_SEEN_HEADER not in provider.requests[1].headers


async def test_an_interrupt_ends_the_turn_before_its_remaining_calls_and_the_run(tmp_path: Path) -> None:
    store = GatewayInMemory()

    async def interrupt() -> None:
        await store.post(interrupt=True)

    two_calls = tool("count", {"key": "a"}, id="t1")
    two_calls.message.content.append(tool("count", {"key": "b"}, id="t2").message.content[0])
    provider = Scripted([two_calls, text("never asked")], {1: interrupt})
    r, counts, _ = runner(tmp_path, store, provider, {"onInterrupt": "end"})
    outcome = await r.run()
    assert outcome.stop_reason is StopReason.USER_INTERRUPT and outcome.exit_code == 0
    assert counts == {} and len(provider.requests) == 1  # no call run, no model call after
    results = [e.data["result"] for e in store.entries() if e.kind == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["t1", "t2"]
    assert all("ada interrupted the run" in r["content"] for r in results)
    assert journal.replay(store.entries()).interrupted_then == "end"
    assert (await store.gw.inbox(RUN, 0, every=True)).closed


async def test_an_interrupted_run_waits_for_the_next_message(tmp_path: Path) -> None:
    store = GatewayInMemory()

    async def interrupt() -> None:
        await store.post(interrupt=True)

    async def reply_later() -> None:
        for _ in range(200):
            await asyncio.sleep(0.02)
            if any(e.kind == "interrupt" for e in store.entries()):
                await store.post("Stop counting; just say hello.")
                return

    provider = Scripted([tool("count", {"key": "a"}, id="t1"), text("hello")], {1: interrupt})
    r, counts, sink = runner(tmp_path, store, provider, {"onInterrupt": "wait", "waitSeconds": 10})
    replier = asyncio.ensure_future(reply_later())
    outcome = await r.run()
    await replier
    assert outcome.stop_reason is StopReason.END_TURN and outcome.summary == "hello" and counts == {}
    assert "Stop counting; just say hello." in provider.requests[-1].messages[-1].text()
    assert sink.of("waiting") and [e.kind for e in store.entries()].count("interrupt") == 1


async def test_a_resumed_waiting_run_waits_on_and_ends_when_none_comes(tmp_path: Path) -> None:
    store = GatewayInMemory()

    async def interrupt() -> None:
        await store.post(interrupt=True)

    provider = Scripted([tool("count", {"key": "a"}, id="t1"), text("never")], {1: interrupt})
    first, _, _ = runner(tmp_path, store, provider, {"onInterrupt": "wait", "waitSeconds": 10})
    first.steer.wait = _lost  # type: ignore[method-assign]  # the pod is lost while it waits
    with pytest.raises(_PodLost):
        await first.run()
    # Resumed: the journal says "waiting until ..."; with the time past, the run ends at once.
    entries = store.entries()
    waiting = next(e for e in entries if e.kind == "interrupt")
    assert waiting.data["then"] == "wait" and waiting.data["until"]
    replayed = journal.replay(entries)
    assert replayed.interrupted_then == "wait" and replayed.steered == 1
    replayed.until = "2000-01-01T00:00:00Z"
    second, _, _ = runner(
        tmp_path, store, Scripted([text("never")]), {"onInterrupt": "wait", "waitSeconds": 10}
    )
    second.steer.taken = replayed.steered
    outcome = await second.steer.wait(replayed.until)
    assert isinstance(outcome, Outcome) and outcome.stop_reason is StopReason.USER_INTERRUPT


class _PodLost(BaseException):
    pass


async def _lost(until: str) -> Outcome | None:
    raise _PodLost


@pytest.mark.parametrize("stored", [True, False])
async def test_a_pod_lost_around_delivery_delivers_the_message_once(tmp_path: Path, stored: bool) -> None:
    """Lost after its `steer` entry was stored: the journal has the message, the inbox says delivered;
    lost before: it is still queued, and the resumed pod delivers it."""
    store = GatewayInMemory()

    async def send() -> None:
        await store.post("Also count d.")

    async def lose() -> None:
        raise _PodLost

    script = [tool("count", {"key": "a"}, id="t1"), tool("count", {"key": "d"}, id="t2"), text("done")]
    # Lost while the second call runs (what rode it is stored), or before it reached the gateway.
    lost = Scripted(script, {1: send, 2: lose}) if stored else Scripted(script, {1: send}, before={2: lose})
    first, counts, _ = runner(tmp_path, store, lost)
    with pytest.raises(_PodLost):
        await first.run()
    assert [e.kind for e in store.entries()].count("steer") == (1 if stored else 0)
    provider = Scripted(script[1:])
    second, counts2, _ = runner(tmp_path, store, provider)
    outcome = await second.run()
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1} and counts2 == {"d": 1}
    assert texts(provider.requests[0]).count("Also count d.") == 1  # from the journal, once
    assert [e.kind for e in store.entries()].count("steer") == 1
    assert store.inbox_reads == (1 if stored else 2)  # the second pod reads it only if not delivered
    box = await store.gw.inbox(RUN, 0, every=True)
    assert [m.state.value for m in box.messages] == ["delivered"]


def test_a_run_that_goes_on_later_keeps_its_inbox_open() -> None:
    """An approval's pause and a SIGTERM stop end this pod, not the run: messages still reach it."""
    assert closing(Outcome(StopReason.APPROVAL_REQUIRED, "")) is None
    assert closing(Outcome(StopReason.INTERRUPTED, "")) is None
    assert closing(Outcome(StopReason.MAX_TURNS, "")) is Close.END
    assert closing(Outcome(StopReason.USER_INTERRUPT, "")) is Close.END


async def test_entries_stored_with_a_call_that_was_then_refused_go_again_as_the_same_batch() -> None:
    """The gateway stored what rode the call, then refused it (a queued message, a budget): the
    answer names nothing, so the runtime appends those entries again, alone (an exact retry, not a
    fence), and keeps what it staged during the call for the next step."""
    store = GatewayInMemory()
    sink = RecordingSink(correlation_id="c", execution="ex-1", secrets=[API_KEY])
    writer = JournalWriter(store, KEY, sink, parent_keys=[], parent_name="")
    durable = Durable(writer)
    durable.stage("message", {"n": 1})
    durable.stage("message", {"n": 2})
    assert durable.flush_soon() is None  # they ride the call
    storing = store_riding(store.gw, LEDGER, Metrics(), CLAIMS, durable.call_headers(), spawn)
    assert storing is not None and await storing.stored() == 2  # stored by the gateway
    durable.stage("reset", {"n": 3})  # staged while the call ran (a compaction)
    await durable.settle(None, answer=None)  # refused: no answer names them
    assert [e.seq for e in store.entries()] == [1, 2] and [e.seq for e in writer.staged] == [3]
    assert not writer.off and writer.status()["entries"] == 2
