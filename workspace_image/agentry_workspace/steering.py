"""Steering a live run (docs/runs.md, "Steering a live run"; agentry_common.steering is the contract).

A person's message waits in the run's inbox at the gateway. Every journal append's answer says the
inbox's highest queued seq; only when it is above what this run has taken does the runtime read the
inbox. Messages are delivered at a turn boundary (before the next model call, and instead of ending
at a final answer), as the user's text, journaled as a `steer` entry whose append marks them
delivered. An interrupt ends the current turn at its next checkpoint: the calls of the model's answer
not yet started are not run (the model is told why); then the run ends (`onInterrupt: end`) or waits
for the next message (`wait`, up to `waitSeconds`, long-polling the inbox).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentry_common.checkpoints import Close
from agentry_common.models import OnInterrupt
from agentry_common.steering import INBOX_SEEN_HEADER, MAX_WAIT_SECONDS, SteerMessage
from agentry_llm import Message, ToolResultBlock, ToolUseBlock

from . import journal
from .durable import StopAtCheckpoint
from .outcome import Outcome, StopReason
from .toolrun import unrun_result

if TYPE_CHECKING:
    from .runner import Runner


def steering_text(messages: list[SteerMessage]) -> str:
    """How the model sees the messages: marked as sent by the person while it worked."""
    parts = []
    for m in messages:
        how = "interrupting your work" if m.interrupt else "while you were working"
        parts.append(f"[A message from {m.by or 'the user'}, sent {how}]\n{m.text}")
    return "\n\n".join(parts)


def not_run_text(by: str) -> str:
    return f"This call was not run: {by or 'the user'} interrupted the run before it started."


def closing(outcome: Outcome) -> Close | None:
    """How the run's last append treats its inbox: closed, unless the run goes on later (a new Job
    after an approval, a new pod after SIGTERM) and still takes messages."""
    later = (StopReason.APPROVAL_REQUIRED, StopReason.INTERRUPTED)
    return None if outcome.stop_reason in later else Close.END


def _ref(m: SteerMessage) -> dict[str, Any]:
    return {"seq": m.seq, "id": m.id, "by": m.by, "interrupt": m.interrupt}


class Steering:
    """The run's side of its inbox. Without a journal (no gateway) nothing is ever queued."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.spec = runner.spec.steering
        self.taken = 0  # the highest inbox seq delivered (journaled)
        self.held: list[SteerMessage] = []  # read from the inbox, not delivered yet
        self.cut_by = ""  # an interrupt is held: the turn's remaining calls are not run
        # The gateway refused a model call for a queued message (steering_queued): the next boundary
        # reads the inbox; if that read finds none (the store refused it), the next call is unchecked.
        self.refused = False
        self.unchecked = False

    @property
    def _writer(self) -> Any:
        durable = self.runner.durable
        return durable.writer if durable.on else None

    @property
    def seen(self) -> int:
        """The highest inbox seq taken or held."""
        return max([self.taken, *(m.seq for m in self.held)])

    def headers(self) -> dict[str, str]:
        """A model call's header for the gateway's check (agentry_common.steering): none without an
        inbox, or once after a refused call whose inbox read found nothing (no loop of refusals)."""
        unchecked, self.unchecked = self.unchecked, False
        if self._writer is None or unchecked:
            return {}
        return {INBOX_SEEN_HEADER: str(self.seen)}

    def queued_at_gateway(self) -> None:
        """The gateway refused the call: a message is queued beyond `seen`; the boundary reads it."""
        writer = self._writer
        if writer is not None:
            writer.inbox_hint = max(writer.inbox_hint, self.seen + 1)
            self.refused = True

    async def poll(self) -> None:
        """Read the inbox when the last append (or the gateway) said a message is queued beyond what is
        held."""
        writer = self._writer
        seen = self.seen
        if writer is None or writer.inbox_hint <= seen:
            return
        inbox = await writer.store.inbox(self.taken)
        self.held = [m for m in inbox.messages if m.seq > self.taken]
        cut = next((m for m in self.held if m.interrupt), None)
        if cut is not None:
            self.cut_by = cut.by

    async def interrupting(self) -> bool:
        """At a checkpoint inside a turn: whether a person has interrupted it."""
        if not self.cut_by:
            await self.poll()
        return bool(self.cut_by)

    def not_run(self, use: ToolUseBlock) -> ToolResultBlock:
        """A call of the interrupted turn: not run; journaled as such."""
        events = self.runner.events
        result = unrun_result(events, use, not_run_text(self.cut_by), refused=False, steered=True, details={})
        data = journal.tool_result(result, self.runner.outputs.values)
        self.runner.durable.stage_result(journal.TOOL_RESULT, data)
        return result

    def _deliver(self, messages: list[SteerMessage]) -> None:
        texts = [m for m in messages if m.text]
        text = steering_text(texts)
        if text:
            runner = self.runner
            runner.messages = journal.with_text(runner.messages, text)
        self.taken = max([self.taken, *(m.seq for m in messages)])
        self.runner.durable.stage(journal.STEER, journal.steer([_ref(m) for m in messages], text))
        writer = self._writer
        if writer is not None:
            writer.delivering = sorted({*writer.delivering, *(m.seq for m in messages)})
        self.runner.events.emit("steered", messages=[_ref(m) for m in messages])

    async def boundary(self) -> Outcome | None:
        """Before a model call: deliver what is queued; an interrupt without text ends or waits."""
        await self.poll()
        held, self.held, cut_by = self.held, [], self.cut_by
        self.cut_by = ""
        self.unchecked, self.refused = self.refused and not held, False
        if not held:
            return None
        if not cut_by or any(m.text for m in held):
            self._deliver(held)  # an interrupt with a message: the run goes on with it
            return None
        return await self._interrupted(held)

    async def final(self, message: Message) -> Outcome | None:
        """The model's answer ends the run, unless a message is queued: the final append closes the
        inbox in the same step, or answers that one is queued (then the run goes on with it)."""
        if self._writer is not None:
            await self.runner.durable.flush(close=Close.IDLE)
        writer = self._writer  # None when the store refused the journal: no inbox either
        if writer is not None and not writer.closed:
            await self.poll()
            if self.held:
                return None  # the next turn's boundary delivers it
        return self.runner._stop(StopReason.END_TURN, message.text() or "(no final message)")

    async def _interrupted(self, held: list[SteerMessage]) -> Outcome | None:
        refs = [_ref(m) for m in held]
        self.taken = max([self.taken, *(m.seq for m in held)])
        writer = self._writer
        if writer is not None:
            writer.delivering = sorted({*writer.delivering, *(m.seq for m in held)})
        by = held[-1].by
        self.runner.events.emit("interrupted", by=by, then=self.spec.on_interrupt.value)
        if self.spec.on_interrupt is OnInterrupt.END:
            self.runner.durable.stage(journal.INTERRUPT, journal.interrupt(refs, OnInterrupt.END.value))
            return self.ended(f"Interrupted by {by or 'the user'}.")
        until = datetime.now(UTC) + timedelta(seconds=self.spec.wait_seconds)
        stamp = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.runner.durable.stage(journal.INTERRUPT, journal.interrupt(refs, OnInterrupt.WAIT.value, stamp))
        await self.runner.durable.flush()
        return await self.wait(stamp)

    def ended(self, why: str) -> Outcome:
        return self.runner._stop(StopReason.USER_INTERRUPT, why)

    async def wait(self, until: str) -> Outcome | None:
        """Interrupted with `onInterrupt: wait`: the next message continues the run; none by `until`
        (RFC 3339) ends it. The pod stays; a SIGTERM stops it at this checkpoint (resumed, it waits on)."""
        writer = self._writer
        end = _epoch(until)
        self.runner.events.emit("waiting", until=until)
        while writer is not None and (left := end - time.time()) > 0:
            if self.runner.durable.stopping:
                raise StopAtCheckpoint
            inbox = await writer.store.inbox(self.taken, wait=int(min(MAX_WAIT_SECONDS, max(1.0, left))))
            fresh = [m for m in inbox.messages if m.seq > self.taken]
            if any(m.text for m in fresh):
                self._deliver(fresh)
                return None
            if fresh:  # another interrupt, without a message: taken (journaled), the wait goes on
                self._deliver(fresh)
                await self.runner.durable.flush()
        waited = self.spec.wait_seconds
        return self.ended(f"Interrupted; no message came within {waited}s (steering.waitSeconds).")


def _epoch(at: str) -> float:
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
