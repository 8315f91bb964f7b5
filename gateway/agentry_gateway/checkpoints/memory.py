"""Journals and steering inboxes in this process (with the memory ledger: development, benchmarks,
tests)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentry_common.checkpoints import Close, Entry, PrunedRun
from agentry_common.steering import Inbox, MessageState, SteerAnswer, SteerMessage, SteerRequest

from .inbox import InboxHead, admit, take
from .store import Appended, Entries, Limits, Page, RunRef, batch_of, decide, page_of


@dataclass
class _Journal:
    execution: str
    entries: list[tuple[Entry, int]] = field(default_factory=list)  # seq n at index n - 1
    bytes: int = 0
    head: InboxHead = field(default_factory=InboxHead)
    messages: dict[int, SteerMessage] = field(default_factory=dict)


class MemoryCheckpointStore:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.journals: dict[str, _Journal] = {}

    async def append(
        self, run: RunRef, entries: Entries, delivered: Sequence[int] = (), close: Close | None = None
    ) -> Appended:
        batch = batch_of(entries, self.limits)
        # No await from the read to the write: atomic on the event loop.
        journal = self.journals.get(run.doc_id) or _Journal(run.execution)
        last = len(journal.entries)
        stored = {e.seq: e.sig for e, _ in journal.entries[batch.first - 1 : batch.end]}
        written = decide(batch, last, journal.bytes, stored, self.limits)
        if written:
            journal.entries.extend(zip(batch.entries, batch.sizes, strict=True))
            journal.bytes += batch.total
        marked, refused = take(journal.head, delivered, close)
        self._mark(journal, marked, MessageState.DELIVERED)
        self._mark(journal, refused, MessageState.REFUSED)
        self.journals[run.doc_id] = journal
        end = batch.end if written else last
        return Appended(end, batch.total if written else 0, journal.head.hint, journal.head.closed)

    @staticmethod
    def _mark(journal: _Journal, seqs: list[int], state: MessageState) -> None:
        for seq in seqs:
            if seq in journal.messages:
                journal.messages[seq] = journal.messages[seq].model_copy(update={"state": state})

    async def read(self, run: RunRef, after: int) -> Page:
        journal = self.journals.get(run.doc_id)
        if journal is None:
            return Page(last=0)
        last = len(journal.entries)
        entries, more = page_of(journal.entries[after:], last, self.limits)
        return Page(last=last, execution=journal.execution, entries=entries, more=more)

    async def post(self, run: RunRef, req: SteerRequest) -> SteerAnswer:
        journal = self.journals.get(run.doc_id) or _Journal(run.execution)
        message, superseded = admit(journal.head, req)
        self._mark(journal, superseded, MessageState.SUPERSEDED)
        journal.messages[message.seq] = message
        self.journals[run.doc_id] = journal
        return SteerAnswer(message=message, superseded=superseded)

    async def inbox(self, run: RunRef, after: int, every: bool = False) -> Inbox:
        journal = self.journals.get(run.doc_id)
        if journal is None:
            return Inbox()
        head = journal.head
        if every:
            messages = sorted(journal.messages.values(), key=lambda m: m.seq)
        else:
            messages = [journal.messages[s] for s in sorted(head.queued) if s > after]
        return Inbox(messages=messages, last=head.hint, closed=head.closed)

    async def prune(self, runs: list[PrunedRun]) -> int:
        gone = [self.journals.pop(RunRef(r.namespace, r.uid).doc_id, None) for r in runs]
        return sum(1 for j in gone if j is not None)

    async def close(self) -> None:
        return None
