"""Journals in this process (with the memory ledger: development, benchmarks, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentry_common.checkpoints import Entry, PrunedRun

from .store import Batch, Limits, Page, RunRef, decide, page_of


@dataclass
class _Journal:
    execution: str
    entries: list[tuple[Entry, int]] = field(default_factory=list)  # seq n at index n - 1
    bytes: int = 0


class MemoryCheckpointStore:
    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.journals: dict[str, _Journal] = {}

    async def append(self, run: RunRef, entries: list[Entry]) -> tuple[int, int]:
        batch = Batch.of(entries, self.limits)
        # No await from the read to the write: atomic on the event loop.
        journal = self.journals.get(run.doc_id) or _Journal(run.execution)
        last = len(journal.entries)
        stored = {e.seq: e.sig for e, _ in journal.entries[batch.first - 1 : batch.end]}
        if not decide(batch, last, journal.bytes, stored, self.limits):
            return last, 0
        journal.entries.extend(zip(batch.entries, batch.sizes, strict=True))
        journal.bytes += batch.total
        self.journals[run.doc_id] = journal
        return batch.end, batch.total

    async def read(self, run: RunRef, after: int) -> Page:
        journal = self.journals.get(run.doc_id)
        if journal is None:
            return Page(last=0)
        last = len(journal.entries)
        entries, more = page_of(journal.entries[after:], last, self.limits)
        return Page(last=last, execution=journal.execution, entries=entries, more=more)

    async def prune(self, runs: list[PrunedRun]) -> int:
        gone = [self.journals.pop(RunRef(r.namespace, r.uid).doc_id, None) for r in runs]
        return sum(1 for j in gone if j is not None)

    async def close(self) -> None:
        return None
