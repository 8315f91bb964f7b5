"""Memory stores in this process (with the memory ledger: development, benchmarks, tests)."""

from __future__ import annotations

from agentry_common.memory import MemoryEntry

from .store import Full, Owner, now_rfc3339


class LocalMemoryStore:
    def __init__(self) -> None:
        self.stores_: dict[str, tuple[Owner, dict[str, MemoryEntry]]] = {}

    def _entries(self, owner: Owner) -> dict[str, MemoryEntry]:
        return self.stores_.get(owner.doc_id, (owner, {}))[1]

    async def entries(self, owner: Owner) -> list[MemoryEntry]:
        entries = self._entries(owner)
        return [entries[k] for k in sorted(entries)]

    async def get(self, owner: Owner, key: str) -> MemoryEntry | None:
        return self._entries(owner).get(key)

    async def put(self, owner: Owner, key: str, value: str, by: str, limit: int) -> MemoryEntry:
        # No await from the check to the write: atomic on the event loop.
        known, entries = self.stores_.get(owner.doc_id, (owner, {}))
        if key not in entries and len(entries) >= limit:
            raise Full(limit)
        entry = MemoryEntry(key=key, value=value, updated_at=now_rfc3339(), updated_by=by)
        entries[key] = entry
        self.stores_[owner.doc_id] = (known if known.agent else owner, entries)
        return entry

    async def delete(self, owner: Owner, key: str) -> bool:
        return self._entries(owner).pop(key, None) is not None

    async def stores(self) -> list[Owner]:
        return [owner for owner, entries in self.stores_.values() if entries]

    async def drop(self, owners: list[Owner]) -> int:
        gone = [self.stores_.pop(o.doc_id, None) for o in owners]
        return sum(1 for g in gone if g is not None)

    async def close(self) -> None:
        return None
