"""What every checkpoint store shares: the protocol, the limits, and the rules of an append (pure).

An append is decided on the journal's head (`last`, `bytes`) and, for a retry, the signatures stored
at the batch's seqs: the rules are here once, each store applies them inside its own atomic step (a
lock in memory, a transaction on the head document in Firestore).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from agentry_common import checkpoints as contract
from agentry_common.checkpoints import Close, Entry, PrunedRun
from agentry_common.steering import Inbox, SteerAnswer, SteerRequest

# A Firestore commit carries at most 10 MiB: an append's entries together stay below it.
MAX_APPEND_BYTES: Final = 8 * 1024 * 1024
RETENTION_DAYS: Final = 30  # the head's and entries' `expireAt` (a TTL policy's backstop)


@dataclass(frozen=True)
class Limits:
    entry_bytes: int = contract.MAX_ENTRY_BYTES
    per_append: int = contract.MAX_ENTRIES_PER_APPEND
    append_bytes: int = MAX_APPEND_BYTES
    run_entries: int = contract.MAX_RUN_ENTRIES
    run_bytes: int = contract.MAX_RUN_BYTES
    page_bytes: int = contract.MAX_PAGE_BYTES


@dataclass(frozen=True)
class RunRef:
    """Whose journal: the run token's claims (the head document records them)."""

    namespace: str
    uid: str
    execution: str = ""
    agent: str = ""

    @property
    def doc_id(self) -> str:
        return f"{self.namespace}.{self.uid}"


@dataclass(frozen=True)
class Page:
    """A page of a journal: entries with seq > after, within the page's byte limit."""

    last: int
    execution: str = ""
    entries: list[Entry] = field(default_factory=list)
    more: bool = False


@dataclass(frozen=True)
class Appended:
    """An append's answer: the journal's last seq, the bytes written (0: an exact retry), the inbox's
    highest queued seq and whether it is closed."""

    last: int
    written: int
    inbox: int = 0
    closed: bool = False


class Refused(Exception):
    """An append or read the store refuses; `reason` labels the refusal metric."""

    status = 400

    def __init__(self, reason: str, detail: str, last: int | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.last = reason, detail, last


class Conflict(Refused):
    status = 409


class TooLarge(Refused):
    status = 413


@dataclass(frozen=True)
class Batch:
    """An append's entries with their sizes (canonical JSON bytes), checked on their own."""

    entries: list[Entry]
    encoded: list[bytes]  # each entry's canonical JSON: what is stored, and what the limits count

    @property
    def sizes(self) -> list[int]:
        return [len(e) for e in self.encoded]

    @property
    def first(self) -> int:
        return self.entries[0].seq

    @property
    def end(self) -> int:
        return self.entries[-1].seq

    @property
    def total(self) -> int:
        return sum(self.sizes)

    @classmethod
    def of(cls, entries: list[Entry], limits: Limits, sent: Sequence[str] | None = None) -> Batch:
        """`sent`: each entry's JSON as it came (entries riding a call: kept as they are, not
        serialised again); else each entry's canonical JSON."""
        if len(entries) > limits.per_append:
            raise TooLarge("entries_per_append", f"{len(entries)} entries; at most {limits.per_append}")
        encoded = [text.encode() for text in (sent or [contract.entry_json(e) for e in entries])]
        sizes = [len(e) for e in encoded]
        for entry, size in zip(entries, sizes, strict=True):
            if size > limits.entry_bytes:
                raise TooLarge(
                    "entry_bytes", f"entry {entry.seq}: {size} bytes; at most {limits.entry_bytes}"
                )
        if sum(sizes) > limits.append_bytes:
            raise TooLarge("append_bytes", f"{sum(sizes)} bytes in one append; at most {limits.append_bytes}")
        return cls(entries, encoded)


# An append's entries, or a Batch of them made already (entries riding a call: their JSON as sent).
Entries = list[Entry] | Batch


def batch_of(entries: Entries, limits: Limits) -> Batch:
    return entries if isinstance(entries, Batch) else Batch.of(entries, limits)


def needs_stored(batch: Batch, last: int) -> bool:
    """Whether deciding needs the stored signatures of the batch's seqs: a retry of stored entries."""
    return batch.first <= last and batch.end <= last


def decide(batch: Batch, last: int, stored_bytes: int, stored_sigs: dict[int, str], limits: Limits) -> bool:
    """True: write the batch; False: it is stored already (an exact retry: answered with `last`).
    Raises Conflict (not the next seq) or TooLarge (the run's limits)."""
    for i, entry in enumerate(batch.entries):
        if entry.seq != batch.first + i:
            raise Conflict("conflict", f"entries[{i}]: seq {entry.seq}, expected {batch.first + i}", last)
    if needs_stored(batch, last):
        if all(stored_sigs.get(e.seq) == e.sig for e in batch.entries):
            return False
        raise Conflict("conflict", f"entries {batch.first}..{batch.end} differ from the stored ones", last)
    if batch.first != last + 1:
        raise Conflict("conflict", f"the first entry's seq is {batch.first}; the next is {last + 1}", last)
    if batch.end > limits.run_entries:
        raise TooLarge("run_entries", f"a journal holds at most {limits.run_entries} entries")
    if stored_bytes + batch.total > limits.run_bytes:
        raise TooLarge("run_bytes", f"a journal holds at most {limits.run_bytes} bytes")
    return True


class CheckpointStore(Protocol):
    limits: Limits

    async def append(
        self, run: RunRef, entries: Entries, delivered: Sequence[int] = (), close: Close | None = None
    ) -> Appended:
        """Store the entries after the journal's last (atomically): the journal's last seq and the bytes
        written (0: an exact retry of entries stored already); in the same atomic step, the steering
        inbox's part (inbox.take): `delivered` seqs marked so, the inbox closed (`close`)."""
        ...

    async def read(self, run: RunRef, after: int) -> Page: ...

    async def post(self, run: RunRef, req: SteerRequest) -> SteerAnswer:
        """A steering message into the run's inbox (inbox.admit); raises InboxRefused."""
        ...

    async def inbox(self, run: RunRef, after: int, every: bool = False) -> Inbox:
        """The queued messages with seq above `after` (every message, any state, with `every`)."""
        ...

    async def prune(self, runs: list[PrunedRun]) -> int:
        """Delete these runs' journals and inboxes; how many existed."""
        ...

    async def close(self) -> None: ...


def page_of(stored: list[tuple[Entry, int]], last: int, limits: Limits) -> tuple[list[Entry], bool]:
    """The entries that fit in one page (at least one), in seq order, and whether more follow up to
    `last`. `stored`: entries with seq > after, with their sizes."""
    out: list[Entry] = []
    total = 0
    for entry, size in stored:
        if entry.seq > last:
            break
        if out and total + size > limits.page_bytes:
            return out, True
        out.append(entry)
        total += size
    return out, bool(out) and out[-1].seq < last
