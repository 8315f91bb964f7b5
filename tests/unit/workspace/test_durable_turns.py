"""Durable turns: the journal a run writes, and a run resumed from it at every point a pod can be lost
(each tool's effect exactly once, usage counted once), forged journals, fencing, the resume limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agentry_common import checkpoints as contract
from agentry_common.checkpoints import (
    MAX_RESUMES_WITHOUT_PROGRESS,
    RIDING_HEADER,
    RIDING_STORED_HEADER,
    Entry,
    Signed,
    decode_riding,
    sign_entry,
    verify_chain,
)
from agentry_common.models import Risk
from agentry_common.steering import Inbox
from agentry_llm import ChatRequest, ChatResponse, ToolResultBlock, ToolSpec, ToolUseBlock
from agentry_workspace import durable as durable_module
from agentry_workspace import journal
from agentry_workspace import runner as runner_module
from agentry_workspace.checkpoints import Fenced, JournalWriter, Refused
from agentry_workspace.config import ConfigError
from agentry_workspace.durable import BESIDE_SECONDS, Durable
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner
from agentry_workspace.state import Decision, ResumeRequest, RunState
from agentry_workspace.tools import Assessment, ToolContext, ToolOutcome

from .fakes import API_KEY, make_config, text, tool

pytestmark = pytest.mark.unit

KEY = "state-key-" + "0" * 40
SECRET = "sk-tool-printed-secret-0123456789"


class PodLost(BaseException):
    """The pod is gone: nothing after this point of the run happens (not caught by the runner)."""


class MemoryStore:
    """The gateway's contract in memory: fencing on seq; `limit` entries at most, then the pod dies."""

    def __init__(self, entries: list[Entry] | None = None, limit: int | None = None) -> None:
        self.entries = list(entries or [])
        self.limit = limit
        self.appends = 0

    async def read(self, *, parent: bool = False) -> list[Entry]:
        return list(self.entries)

    async def append(self, entries: list[Signed], **_: Any) -> None:  # no steering inbox here
        last = self.entries[-1].seq if self.entries else 0
        if entries[0].seq != last + 1:
            raise Fenced(last)
        self.appends += 1
        for signed in entries:
            if self.limit is not None and len(self.entries) >= self.limit:
                raise PodLost
            self.entries.append(signed.entry)

    async def inbox(self, after: int, wait: int = 0) -> Inbox:
        return Inbox()  # never read: the appends answer no queued message

    async def aclose(self) -> None:
        return None


class CountingTool:
    """A tool whose effect is counted per key (a line appended, a POST sent)."""

    name = "count"

    def __init__(self, counts: dict[str, int], repeatable: bool = False, delay: float = 0.0) -> None:
        self.counts = counts
        self.repeatable = repeatable
        self.delay = delay  # how long a call runs after its effect

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(name=self.name, description="count", input_schema={"type": "object"})

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        return Assessment(Risk.GREEN)

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"count {args.get('key')}"

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return self.repeatable

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        key = str(args["key"])
        self.counts[key] = self.counts.get(key, 0) + 1
        await asyncio.sleep(self.delay)
        return ToolOutcome(f"counted {key}; token {SECRET}")


class TurnProvider:
    """Answers by the conversation's turn (assistant messages so far): a resumed run gets the same
    answers as the run it continues. With `store`, it is the gateway too: the entries riding a call
    are stored first, and the answer names the last (not when fenced: then it names none)."""

    name = "anthropic/claude-sonnet-4-6"
    model = "claude-sonnet-4-6"
    endpoint = "fake"

    def __init__(self, script: list[ChatResponse], store: MemoryStore | None = None) -> None:
        self.script, self.store = script, store
        self.calls = 0
        self.last: ChatRequest | None = None
        self.rode: list[list[str]] = []  # per call: the kinds of the entries riding it

    async def complete(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        self.calls += 1
        self.last = request.model_copy(deep=True)
        said = await self._store_riding(request)
        turn = sum(1 for m in request.messages if m.role == "assistant")
        return self.script[turn].model_copy(update={"gateway": said})

    async def _store_riding(self, request: ChatRequest) -> dict[str, str]:
        value = request.headers.get(RIDING_HEADER)
        rode = decode_riding(value) if value is not None else None
        self.rode.append([e.kind for e in rode.entries] if rode is not None else [])
        if rode is None or self.store is None:
            return {}
        sent = zip(rode.entries, rode.encoded, strict=True)
        try:
            await self.store.append([Signed(e.seq, e.kind, e.data, e.at, e.sig, text) for e, text in sent])
        except (Fenced, Refused):  # not stored: the answer names none
            return {}
        return {RIDING_STORED_HEADER: str(rode.entries[-1].seq)}

    async def aclose(self) -> None:
        return None


SCRIPT = [
    tool("count", {"key": "a"}, id="t1a", inp=100, out=10),
    tool("count", {"key": "b"}, id="t2b", inp=200, out=20),
    tool("count", {"key": "c"}, id="t3c", inp=300, out=30),
    text("done", inp=400, out=40),
]


def _runner(
    tmp_path: Path,
    store: MemoryStore,
    counts: dict[str, int],
    script: list[ChatResponse] = SCRIPT,
    **kwargs: Any,
) -> tuple[Runner, RecordingSink]:
    cfg = make_config(tmp_path, {"tools": ["files"]})
    sink = RecordingSink(correlation_id="c", execution="ex-1", secrets=[API_KEY, SECRET])
    runner = Runner(cfg, sink, providers=[TurnProvider(script, store)])
    runner.tools["count"] = CountingTool(counts, **kwargs)
    writer = JournalWriter(store, KEY, sink, parent_keys=[], parent_name="")
    runner.durable = Durable(writer)
    return runner, sink


async def _run(
    tmp_path: Path, store: MemoryStore, counts: dict[str, int], **kw: Any
) -> tuple[Outcome, Runner]:
    runner, _ = _runner(tmp_path, store, counts, **kw)
    return await runner.run(), runner


async def test_a_run_journals_every_step_signed_and_redacted(tmp_path: Path) -> None:
    store, counts = MemoryStore(), dict[str, int]()
    outcome, _ = await _run(tmp_path, store, counts)
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1, "b": 1, "c": 1}
    kinds = [e.kind for e in store.entries]
    assert kinds == ["begin", "message"] + ["message", "tool_started", "tool_result"] * 3 + ["message"]
    assert verify_chain([KEY], store.entries) == KEY
    assert SECRET not in str([e.wire() for e in store.entries])  # redacted before signing
    assert outcome.checkpoint == {
        "entries": 12,
        "resumes": 0,
        "interruptedCalls": 0,
        "lastAt": store.entries[-1].at,
    }
    # A tool's result and the next step's intent go together: fewer appends than entries.
    assert store.appends < len(store.entries)


@pytest.mark.parametrize("cut", range(0, 12))
async def test_resuming_at_every_cut_runs_each_effect_once(tmp_path: Path, cut: int) -> None:
    full_store, full_counts = MemoryStore(), dict[str, int]()
    full, _ = await _run(tmp_path / "full", full_store, full_counts)
    store, counts = MemoryStore(limit=cut), dict[str, int]()
    with pytest.raises(PodLost):
        await _run(tmp_path / "lost", store, counts)
    store.limit = None
    resumed, _ = await _run(tmp_path / "lost", store, counts)
    assert counts == {"a": 1, "b": 1, "c": 1}  # never twice, never missing
    assert resumed.stop_reason is StopReason.END_TURN and resumed.summary == "done"
    assert resumed.usage == full.usage  # every model answer counted once
    assert verify_chain([KEY], store.entries) == KEY
    replayed = journal.replay(store.entries)
    interrupted = replayed.interrupted_calls
    # A call whose intent was stored but not its result is reported, not run again.
    started = {e.data["toolUseId"] for e in store.entries[:cut] if e.kind == "tool_started"}
    results = {e.data["result"]["tool_use_id"] for e in store.entries[:cut] if e.kind == "tool_result"}
    assert interrupted == len(started - results)
    expected = journal.replay(full_store.entries).messages
    if not interrupted:
        assert [m.model_dump() for m in replayed.messages] == [m.model_dump() for m in expected]
    assert resumed.checkpoint is not None and resumed.checkpoint["resumes"] == (1 if cut else 0)


async def test_an_idempotent_interrupted_call_runs_again(tmp_path: Path) -> None:
    # begin, message, message, tool_started(a): a call slower than BESIDE_SECONDS has its intent
    # stored as it runs, then the pod is lost before its result.
    store, counts = MemoryStore(limit=4), dict[str, int]()
    slow = {"repeatable": True, "delay": BESIDE_SECONDS * 5}
    with pytest.raises(PodLost):
        await _run(tmp_path, store, counts, **slow)
    assert [e.kind for e in store.entries][-1] == "tool_started"
    store.limit = None
    outcome, _ = await _run(tmp_path, store, counts, **slow)
    assert counts == {"a": 2, "b": 1, "c": 1} and outcome.checkpoint is not None
    assert outcome.checkpoint["interruptedCalls"] == 0


class WatchedStore(MemoryStore):
    """Says when each append starts and ends, and lets the loop run others in between."""

    def __init__(self, said: list[str]) -> None:
        super().__init__()
        self.said = said

    async def append(self, entries: list[Signed], **kw: Any) -> None:
        self.said.append("append " + " ".join(e.entry.kind for e in entries))
        await asyncio.sleep(0.01)
        await super().append(entries, **kw)
        self.said.append("stored")


@pytest.mark.parametrize("repeatable", [False, True])
async def test_a_call_runs_after_its_intent_is_stored_unless_it_may_run_twice(
    tmp_path: Path, repeatable: bool
) -> None:
    said: list[str] = []
    # A repeatable call slower than BESIDE_SECONDS: its intent is stored as it runs (a quicker one has
    # none: test_a_quick_repeatable_call_is_journaled_by_its_result).
    delay = BESIDE_SECONDS * 3 if repeatable else 0.0
    runner, _ = _runner(tmp_path, WatchedStore(said), {}, repeatable=repeatable, delay=delay)
    tool_ = runner.tools["count"]
    original = tool_.run

    async def run(args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        said.append(f"run {args['key']}")
        return await original(args, ctx)

    tool_.run = run  # type: ignore[method-assign]
    outcome = await runner.run()
    assert outcome.stop_reason is StopReason.END_TURN
    # The append holding the model's answer and the first call's intent, and when it was stored.
    first = next(i for i, line in enumerate(said) if line.startswith("append") and "tool_started" in line)
    stored = said.index("stored", first)
    if repeatable:  # the call ran before its intent was stored
        assert said.index("run a") < stored, said
    else:
        assert said.index("run a") > stored, said
    store = runner.durable.writer.store if runner.durable.writer else None
    assert isinstance(store, WatchedStore) and verify_chain([KEY], store.entries) == KEY
    assert [e.kind for e in store.entries].count("tool_result") == 3


@pytest.mark.parametrize("slow", [False, True])
async def test_a_quick_repeatable_call_is_journaled_by_its_result(tmp_path: Path, slow: bool) -> None:
    """A call that may run twice does not wait for its intent; one that ends within BESIDE_SECONDS
    has none, and is journaled by its result alone (a lost pod runs it again either way); a slower
    one's intent is written and stored as it runs."""
    said: list[str] = []
    runner, _ = _runner(tmp_path, WatchedStore(said), {}, repeatable=True)
    tool_ = runner.tools["count"]
    original = tool_.run

    async def run(args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        if slow:
            await asyncio.sleep(BESIDE_SECONDS * 5)
        return await original(args, ctx)

    tool_.run = run  # type: ignore[method-assign]
    provider = runner.providers[0]
    answer = provider.complete

    async def complete(request: ChatRequest, on_text: Any = None) -> ChatResponse:
        # A quick model, over the network: half of BESIDE_SECONDS, so an append that waited that
        # long would come after its answer; long enough that a loaded machine's scheduling (the
        # append is a few loop turns from the call's end) does not.
        await asyncio.sleep(BESIDE_SECONDS / 2)
        said.append("answered")
        return await answer(request, on_text)

    provider.complete = complete  # type: ignore[method-assign]
    assert (await runner.run()).stop_reason is StopReason.END_TURN
    appends = [line for line in said if line.startswith("append")]
    together = appends.count("append message tool_result")
    rode = runner.providers[0].rode  # type: ignore[attr-defined]
    if slow:  # the intent is stored as the call runs; the result rides the next model call
        assert together == 0 and appends.count("append message tool_started") == 3, appends
        assert rode[1:] == [["tool_result"]] * 3, rode
    else:  # the answer and the result ride the next model call (stored as they ride), no intent
        assert together == 3 and rode[1:] == [["message", "tool_result"]] * 3, rode
        # Besides them: the run's start, stored before its first call, and its end, which closes it.
        assert appends == ["append begin message", *[appends[1]] * 3, "append message"], said


async def test_quick_repeatable_calls_of_one_turn_journal_their_results_alone_in_order(
    tmp_path: Path,
) -> None:
    """Two quick repeatable calls in one turn, each yielding to the loop as real I/O does: the first
    call's beside-append runs while the second call runs, after the first has ended; it stages no
    intent then (one after its result would read as a call begun again and never finished)."""
    two = tool("count", {"key": "a"}, id="t1a")
    two.message.content.append(ToolUseBlock(id="t1b", name="count", input={"key": "b"}))
    store = MemoryStore()
    runner, _ = _runner(tmp_path, store, {}, [two, text("done")], repeatable=True)
    tool_ = runner.tools["count"]
    original = tool_.run

    async def run(args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        for _ in range(3):
            await asyncio.sleep(0)
        return await original(args, ctx)

    tool_.run = run  # type: ignore[method-assign]
    assert (await runner.run()).stop_reason is StopReason.END_TURN
    kinds = [e.kind for e in store.entries]
    assert kinds == ["begin", "message", "message", "tool_result", "tool_result", "message"], kinds
    calls = [e.data["result"]["tool_use_id"] for e in store.entries if e.kind == "tool_result"]
    assert calls == ["t1a", "t1b"]
    assert verify_chain([KEY], store.entries) == KEY


async def test_entries_a_calls_answer_does_not_name_stored_are_appended_after_it(tmp_path: Path) -> None:
    """A gateway that stored nothing riding a call (an older one, its store down) names no entry in
    its answer: the runtime appends them itself before it goes on, and the journal is whole."""
    said: list[str] = []
    store = WatchedStore(said)
    runner, _ = _runner(tmp_path, store, {}, repeatable=True)
    provider = runner.providers[0]
    assert isinstance(provider, TurnProvider)
    provider.store = None  # answers without storing what rides
    assert (await runner.run()).stop_reason is StopReason.END_TURN
    assert provider.rode[1:] == [["message", "tool_result"]] * 3  # they rode (quick: no intent)
    kinds = [e.kind for e in store.entries]
    assert kinds == ["begin", "message"] + ["message", "tool_result"] * 3 + ["message"]
    assert verify_chain([KEY], store.entries) == KEY
    assert said.count("append message tool_result") == 3  # each appended after its call


class FakeClock:
    """durable.py's `time`: a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


class BesideStore(MemoryStore):
    """Notes each append and whether it said it goes beside a model call (BESIDE_CALL_HEADER)."""

    def __init__(self, said: list[str]) -> None:
        super().__init__()
        self.said = said

    async def append(self, entries: list[Signed], **kw: Any) -> None:
        self.said.append("append beside" if kw.get("beside") else "append")
        await super().append(entries, **kw)


@pytest.mark.parametrize("slow", [False, True])
async def test_an_append_asks_to_go_after_a_model_call_only_beside_a_slow_one(
    tmp_path: Path, slow: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append sent while a model call runs says so (the gateway routes that call first) once the
    run's last two calls outlasted SLOW_CALL_SECONDS; beside an instant model, or awaited by a tool,
    it does not."""
    monkeypatch.setattr(contract, "MAX_RIDING_BYTES", 0)  # entries too large to ride a model call
    clock = FakeClock()  # how long a call takes is the model's, not the machine's load
    monkeypatch.setattr(durable_module, "time", clock)
    said: list[str] = []
    runner, _ = _runner(tmp_path, BesideStore(said), {}, repeatable=True)
    provider = runner.providers[0]
    answer = provider.complete

    async def complete(request: ChatRequest, on_text: Any = None) -> ChatResponse:
        said.append("call")
        await asyncio.sleep(0.001)  # the append sent beside the call goes now
        clock.now += durable_module.SLOW_CALL_SECONDS * (2 if slow else 0.5)
        said.append("answered")
        return await answer(request, on_text)

    provider.complete = complete  # type: ignore[method-assign]
    assert (await runner.run()).stop_reason is StopReason.END_TURN
    during = {i: _call_of(said, i) for i, line in enumerate(said) if line.startswith("append")}
    beside = {i for i, line in enumerate(said) if line == "append beside"}
    if slow:  # every append during a call after two slow ones, and no other
        assert beside == {i for i, call in during.items() if call > 2} and len(beside) >= 1, said
    else:
        assert not beside and any(during.values()), said


def _call_of(said: list[str], i: int) -> int:
    """Which model call (1, 2, ...) line i comes during; 0 when none is under way."""
    before = [line for line in said[:i] if line in ("call", "answered")]
    return before.count("call") if before and before[-1] == "call" else 0


@pytest.mark.parametrize("cut", range(0, 9))  # the run's 9 entries (quick calls: no intents)
async def test_repeatable_calls_resumed_at_every_cut_end_whole_with_usage_once(
    tmp_path: Path, cut: int
) -> None:
    full, _ = await _run(tmp_path / "full", MemoryStore(), {}, repeatable=True)
    store, counts = MemoryStore(limit=cut), dict[str, int]()
    with pytest.raises(PodLost):
        await _run(tmp_path / "lost", store, counts, repeatable=True)
    store.limit = None
    resumed, _ = await _run(tmp_path / "lost", store, counts, repeatable=True)
    assert sorted(counts) == ["a", "b", "c"] and set(counts.values()) <= {1, 2}  # may run twice
    assert resumed.stop_reason is StopReason.END_TURN and resumed.summary == "done"
    assert resumed.usage == full.usage  # every model answer counted once
    assert verify_chain([KEY], store.entries) == KEY
    assert resumed.checkpoint is not None and resumed.checkpoint["interruptedCalls"] == 0


async def test_a_forged_journal_is_refused(tmp_path: Path) -> None:
    store = MemoryStore()
    await _run(tmp_path, store, {})
    forged = store.entries[:3]
    forged[2] = forged[2].model_copy(update={"data": {**forged[2].data, "usage": {"turns": 0}}})
    runner, _ = _runner(tmp_path, MemoryStore(forged), {})
    with pytest.raises(ConfigError, match="does not verify"):
        await runner.run()


async def test_another_pod_ahead_stops_this_one_without_writing(tmp_path: Path) -> None:
    store, counts = MemoryStore(), dict[str, int]()
    runner, _ = _runner(tmp_path, store, counts)
    other = sign_entry(KEY, "", 1, "begin", {"pod": "other", "resumed": False})

    async def ahead(*, parent: bool = False) -> list[Entry]:
        store.read = MemoryStore.read.__get__(store)  # type: ignore[method-assign]
        store.entries = [other]  # the other pod appends after this one read the journal
        return []

    store.read = ahead  # type: ignore[method-assign]
    outcome = await runner.run()
    assert outcome.stop_reason is StopReason.INTERRUPTED and outcome.exit_code == 75
    assert store.entries == [other] and counts == {}


async def test_resumes_without_progress_stop_at_the_limit(tmp_path: Path) -> None:
    store = MemoryStore(limit=2)
    with pytest.raises(PodLost):
        await _run(tmp_path, store, {})
    for _ in range(MAX_RESUMES_WITHOUT_PROGRESS):  # each new pod is lost before its next entry
        store.limit = len(store.entries) + 1
        with pytest.raises(PodLost):
            await _run(tmp_path, store, {})
    store.limit = None
    outcome, _ = await _run(tmp_path, store, {})
    assert outcome.stop_reason is StopReason.RESUME_LIMIT and outcome.exit_code == 17
    assert journal.replay(store.entries).idle_resumes == MAX_RESUMES_WITHOUT_PROGRESS


async def test_sigterm_stops_at_the_next_checkpoint(tmp_path: Path) -> None:
    store, counts = MemoryStore(), dict[str, int]()
    runner, _ = _runner(tmp_path, store, counts)
    tool_ = runner.tools["count"]
    original = tool_.run

    async def run_then_term(args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        runner.interrupt()  # SIGTERM while the first call runs: it finishes, nothing after it
        return await original(args, ctx)

    tool_.run = run_then_term  # type: ignore[method-assign]
    outcome = await runner.run()
    assert outcome.stop_reason is StopReason.INTERRUPTED and counts == {"a": 1}
    assert store.entries[-1].kind == "tool_result" and outcome.checkpoint is not None
    assert outcome.checkpoint["entries"] == len(store.entries)
    resumed, _ = await _run(tmp_path, store, counts)
    assert resumed.stop_reason is StopReason.END_TURN and counts == {"a": 1, "b": 1, "c": 1}


async def test_a_resumed_run_s_deadline_counts_from_its_first_entry(tmp_path: Path) -> None:
    store = MemoryStore()
    await _run(tmp_path, store, {})
    old = [e.model_copy(update={"at": "2020-01-01T00:00:00.000Z"}) for e in store.entries[:4]]
    outcome, _ = await _run(tmp_path, MemoryStore(old), {})
    assert outcome.stop_reason is StopReason.DEADLINE  # years ago: nothing is left of its timeout


async def test_a_refused_journal_is_a_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    store, counts = MemoryStore(), dict[str, int]()
    runner, sink = _runner(tmp_path, store, counts)

    async def refuse(entries: list[Entry], **_: Any) -> None:
        raise Refused("HTTP 413 the run's journal is full")

    store.append = refuse  # type: ignore[method-assign]
    outcome = await runner.run()
    assert outcome.stop_reason is StopReason.END_TURN and counts == {"a": 1, "b": 1, "c": 1}
    assert outcome.checkpoint is not None and "413" in outcome.checkpoint["note"]
    assert any("without checkpoints" in e["message"] for e in sink.of("warning"))


def test_a_follow_up_continues_the_parent_conversation_with_its_input() -> None:
    parent = journal.replay(_entries([("message", journal.message(SCRIPT[3].message, {}, {}, final=True))]))
    messages = journal.continue_with(parent, "now Friday")
    assert [m.role for m in messages] == ["assistant", "user"] and messages[-1].text() == "now Friday"
    pending = journal.replay(_entries([("message", journal.message(SCRIPT[0].message, {}, {}))]))
    answered = journal.continue_with(pending, "go on")[-1].content
    assert isinstance(answered[0], ToolResultBlock) and answered[0].is_error  # never left unanswered


def _entries(items: list[tuple[str, dict[str, Any]]]) -> list[Entry]:
    out, sig = [], ""
    for seq, (kind, data) in enumerate(items, start=1):
        out.append(sign_entry(KEY, sig, seq, kind, data))
        sig = out[-1].sig
    return out


async def test_an_approval_pause_and_its_decision_continue_one_journal(tmp_path: Path) -> None:
    spec = {"tools": ["files", "shell"], "approval": {"redTools": ["shell"]}}
    store = MemoryStore()
    deploy = tool("shell", {"command": "echo shipped >> deployed.txt"}, id="toolu_deploy")
    sink = RecordingSink(correlation_id="c", execution="ex-1", secrets=[API_KEY])

    def runner_for(cfg: Any, script: list[ChatResponse]) -> Runner:
        runner = Runner(cfg, sink, providers=[TurnProvider(script)])
        runner.durable = Durable(JournalWriter(store, KEY, sink, parent_keys=[], parent_name=""))
        return runner

    paused = await runner_for(make_config(tmp_path, spec), [deploy]).run()
    assert paused.stop_reason is StopReason.APPROVAL_REQUIRED and store.entries[-1].kind == "paused"
    state = RunState.model_validate(sink.of("approval_request")[-1]["state"])
    decision = Decision(approval_id=state.pending.approval_id, approved=True, decided_by="alice")
    cfg = make_config(tmp_path, spec, resume=ResumeRequest(state=state, decision=decision))
    done = await runner_for(cfg, [deploy, text("Deployed.")]).run()
    assert done.stop_reason is StopReason.END_TURN and done.summary == "Deployed."
    assert (cfg.workspace / "deployed.txt").read_text() == "shipped\n"
    kinds = [e.kind for e in store.entries]
    assert kinds[kinds.index("paused") + 1 :] == ["begin", "tool_started", "tool_result", "message"]
    assert verify_chain([KEY], store.entries) == KEY


async def test_a_step_past_the_grace_is_abandoned_and_reported_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "STEP_GRACE_SECONDS", 0.05)
    store, counts = MemoryStore(), dict[str, int]()
    runner, _ = _runner(tmp_path, store, counts)
    tool_ = runner.tools["count"]
    original = tool_.run

    async def hang(args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        outcome = await original(args, ctx)  # its effect happens, then it outlives the grace
        runner.interrupt()
        await asyncio.sleep(30)
        return outcome

    tool_.run = hang  # type: ignore[method-assign]
    stopped = await runner.run()
    assert stopped.stop_reason is StopReason.INTERRUPTED and "did not end within" in stopped.summary
    assert store.entries[-1].kind == "tool_started" and counts == {"a": 1}
    resumed, _ = await _run(tmp_path, store, counts)
    assert resumed.stop_reason is StopReason.END_TURN and counts == {"a": 1, "b": 1, "c": 1}
    assert resumed.checkpoint is not None and resumed.checkpoint["interruptedCalls"] == 1


def _durable(store: MemoryStore) -> Durable:
    return Durable(
        JournalWriter(store, KEY, RecordingSink(correlation_id="c"), parent_keys=[], parent_name="")
    )


async def test_an_intent_waiting_on_its_call_at_the_runs_end_is_never_sent() -> None:
    store = MemoryStore()
    durable = _durable(store)
    await durable.step_beside(journal.TOOL_STARTED, {"toolUseId": "t1", "tool": "count"})
    durable.abandon()
    await asyncio.sleep(BESIDE_SECONDS * 3)  # past the moment the intent would have gone
    assert durable.storing is None and store.entries == []  # nothing staged or appended after the end


async def test_an_append_under_way_at_the_runs_end_is_abandoned() -> None:
    store, appending = MemoryStore(), asyncio.Event()
    durable = _durable(store)
    durable.storing = asyncio.create_task(appending.wait())  # an earlier append, still on its way
    await durable.step_beside(journal.TOOL_STARTED, {"toolUseId": "t1", "tool": "count"})
    await asyncio.sleep(BESIDE_SECONDS * 3)  # the call outlasted it: its intent waits on the append
    under_way = durable.storing
    durable.abandon()
    appending.set()
    assert under_way is not None and durable.storing is None
    with pytest.raises(asyncio.CancelledError):
        await under_way
    assert store.entries == []  # nothing appended after the run's end
