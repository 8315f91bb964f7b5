"""The runner's side of durable turns: its journal (or none), the step boundaries where a run
interrupted by SIGTERM stops, and what a resumed run or a follow-up starts from."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentry_common.checkpoints import RIDING_HEADER, RIDING_STORED_HEADER, Close
from agentry_common.models import OnInterrupt
from agentry_llm import ChatResponse, Message, TextBlock

from . import journal, toolrun
from .checkpoints import JournalWriter, Riding
from .config import RunConfig
from .journal import Replayed, replay
from .outcome import Outcome, StopReason
from .prompts import CONTINUE_PROMPT
from .usage import UsageTracker

if TYPE_CHECKING:
    from .runner import Runner


class StopAtCheckpoint(Exception):
    """SIGTERM arrived and the current step is journaled: the run stops here (INTERRUPTED)."""


@dataclass
class Opened:
    own: Replayed
    parent: Replayed | None
    parent_name: str


# An idempotent call that ends within this long has its intent stored with its result, in one append.
BESIDE_SECONDS = 0.02
# An append sent during a model call asks the gateway to route that call first (BESIDE_CALL_HEADER)
# when the run's last two calls took longer than this (a first call is slow on its own: a new
# connection): then the call outlasts the append, which waits for nothing. Beside an instant model it
# would only come later.
SLOW_CALL_SECONDS = 0.1


class Durable:
    """The run's journal; every method is a no-op for a run without one."""

    def __init__(self, writer: JournalWriter | None) -> None:
        self.writer = writer
        self.stopping = False  # SIGTERM received: stop at the next step boundary
        self.storing: asyncio.Task[None] | None = None  # an append under way (beside a call)
        # A repeatable call's intent, staged and sent if the call outlasts BESIDE_SECONDS: a timer,
        # not a task, as most such calls end sooner and a cancelled timer costs them nothing.
        self._beside: asyncio.TimerHandle | None = None
        self.model_call = False  # between flush_soon and settle: no step waits on an append
        self._call_started = 0.0
        self._slow_call = False  # the last model call outlasted SLOW_CALL_SECONDS
        self.slow_calls = False  # and the one before it
        self.riding: Riding | None = None  # staged entries sent with the model call under way

    @property
    def on(self) -> bool:
        return self.writer is not None and not self.writer.off

    async def open(self, cfg: RunConfig) -> Opened | None:
        """Read and verify the journals; a resumed run's deadline counts from its first entry."""
        if self.writer is None:
            return None
        loaded = await self.writer.load()
        own = replay(loaded.own)
        if own.first_at:
            cfg.started = min(cfg.started, time.monotonic() - _age(own.first_at))
        self.writer.resumes = own.resumes + (0 if own.empty else 1)
        self.writer.interrupted_calls = own.interrupted_calls
        parent = replay(loaded.parent) if loaded.parent is not None else None
        return Opened(own, parent, loaded.parent_name)

    def stage(self, kind: str, data: dict[str, Any] | None) -> None:
        if self.writer is not None and data is not None:
            self.writer.stage(kind, data)

    async def flush(self, close: Close | None = None) -> None:
        await self._stored()
        if self.writer is not None:
            await self.writer.flush(close)

    async def step(self, kind: str = "", data: dict[str, Any] | None = None) -> None:
        """A step boundary: the staged entries (and this one) are stored, in one append, before the
        step starts; after SIGTERM the run stops here instead (what is staged is stored first)."""
        if self.writer is None:
            return
        await self._stored()
        if self.stopping:
            await self.writer.flush()
            raise StopAtCheckpoint
        self.stage(kind, data)
        await self.writer.flush()

    async def step_beside(self, kind: str, data: dict[str, Any] | None) -> None:
        """A step whose call may run twice (an idempotent tool): its intent is staged and sent once
        the call has run BESIDE_SECONDS, and the next step waits for it. One that ends sooner is
        journaled by its result alone (stage_result): a lost pod runs such a call again whether its
        intent was stored or not, so the intent is neither signed nor sent."""
        if self.writer is None or self.stopping:
            await self.step(kind, data)
            return
        self._beside = asyncio.get_running_loop().call_later(BESIDE_SECONDS, self._outlasted, kind, data)

    def _outlasted(self, kind: str, data: dict[str, Any] | None) -> None:
        """The repeatable call still runs: its intent goes now (after any append on its way)."""
        self._beside = None
        self.stage(kind, data)  # the call still runs: nothing has been staged since it began
        self.storing = self._after(self.storing)

    def stage_result(self, kind: str, data: dict[str, Any] | None) -> None:
        """A call's result: staged (a repeatable call that ended within BESIDE_SECONDS sends no
        intent; one that outlasted it has its intent on its way, and this goes after it)."""
        self._cancel_beside()
        self.stage(kind, data)

    def _cancel_beside(self) -> None:
        if self._beside is not None:
            self._beside.cancel()
            self._beside = None

    def flush_soon(self) -> asyncio.Task[None] | None:
        """Store what is staged while the caller goes on (a model call: it has no effect to protect):
        riding the call when it fits (`call_headers`), else in an append beside it; `settle` it
        before staging more."""
        if self.writer is None:
            return None
        self.model_call, self._call_started = True, time.monotonic()
        self.riding = self.writer.riding()  # None while an append is on its way: it goes first
        if self.riding is not None:
            self._unpark()
            return None
        if not (self.writer.staged or self.storing):
            return None
        task, self.storing = self._after(self.storing), None
        return task

    def _unpark(self) -> None:
        """The entries an append that has not started would send ride the call instead (no append is
        on its way, so it has sent nothing); one that ended has its failure (a fence) raised here."""
        task, self.storing = self.storing, None
        if task is None:
            return
        if task.done():
            task.result()
        else:
            task.cancel()

    def call_headers(self) -> dict[str, str]:
        return {RIDING_HEADER: self.riding.header} if self.riding is not None else {}

    def _after(self, earlier: asyncio.Task[None] | None) -> asyncio.Task[None]:
        """An append that starts when `earlier` has ended (appends go one at a time, in order); sent
        while a model call is under way, it says so (the gateway routes the calls it holds first)."""
        writer = self.writer
        assert writer is not None

        async def append() -> None:
            if earlier is not None:
                await earlier
            await writer.flush(beside=self.model_call and self.slow_calls)

        return asyncio.create_task(append())

    async def _stored(self) -> None:
        task, self.storing = self.storing, None
        if task is not None:
            await task

    def abandon(self) -> None:
        """The run ends without its last steps (an error, a deadline): no append goes on after it."""
        self._cancel_beside()
        task, self.storing = self.storing, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: a failed append is not logged again as never retrieved

    async def settle(
        self, task: asyncio.Task[None] | None, failed: bool = False, answer: object = None
    ) -> None:
        """Wait for a `flush_soon`; after a failed step, cancel it (the run is ending). Entries that
        rode the call and that its answer does not name stored are appended now."""
        if self.model_call:
            slow = time.monotonic() - self._call_started > SLOW_CALL_SECONDS
            self.slow_calls, self._slow_call = slow and self._slow_call, slow
        self.model_call = False
        riding, self.riding = self.riding, None
        if riding is not None and self.writer is not None and not failed:
            said = answer.gateway.get(RIDING_STORED_HEADER, "") if isinstance(answer, ChatResponse) else ""
            if said.isdigit():
                self.writer.stored(riding, int(said))
            if self.writer.staged and self.writer.staged[0].seq <= riding.last:
                await self.writer.resend(riding)
        if task is None:
            return
        if failed:
            task.cancel()
            return
        await task

    def status(self) -> dict[str, Any] | None:
        return self.writer.status() if self.writer is not None else None

    def count_interrupted(self) -> None:
        if self.writer is not None:
            self.writer.interrupted_calls += 1


def pod_name() -> str:
    return os.environ.get("HOSTNAME", "")


def _age(at: str) -> float:
    """Seconds since an entry's `at` (RFC 3339); 0 when it cannot be read."""
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, time.time() - then.timestamp())


async def continue_from(runner: Runner, own: journal.Replayed) -> Outcome | None:
    """A lost pod's run, from its journal: done calls are not run again; a started one without a
    result is reported interrupted, unless its tool is idempotent (then it runs again)."""
    runner.messages = list(own.messages)
    runner.usage = UsageTracker.from_state(own.usage)
    runner.outputs.values = dict(own.outputs)
    rerun = [u for u in own.interrupted if toolrun.idempotent(runner.tools, u)]
    lost = [u for u in own.interrupted if u not in rerun]
    runner.events.emit(
        "resumed",
        fromEntry=own.entries,
        resumes=own.resumes + 1,
        doneCalls=len(own.done),
        interruptedCalls=len(lost),
        rerunCalls=len(rerun),
        notStartedCalls=len(own.not_started),
    )
    runner._emit_usage()
    runner.steer.taken = own.steered
    if own.final:
        return runner._stop(StopReason.END_TURN, runner._last_text() or "(no final message)")
    if own.interrupted_then == OnInterrupt.END:
        return runner.steer.ended("Interrupted by the user.")
    if own.interrupted_then == OnInterrupt.WAIT:
        return await runner.steer.wait(own.until)
    if not own.pending:
        if runner.messages and runner.messages[-1].role == "assistant":  # a max_tokens answer
            runner._append(Message(role="user", content=[TextBlock(text=CONTINUE_PROMPT)]))
        return None
    if runner._turns_spent():
        return runner._max_turns()
    results = list(own.done)
    for use in lost:
        results.append(toolrun.interrupted_result(use, runner.events))
        runner.durable.stage(
            journal.TOOL_RESULT, journal.tool_result(results[-1], runner.outputs.values, interrupted=True)
        )
        runner.durable.count_interrupted()
    return await runner._run_tool_calls([*rerun, *own.not_started], results)
