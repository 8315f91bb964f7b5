"""What every memory store shares: the protocol, whose store it is, and the bound on its entries.

A write of a new key into a full store is refused (`Full`); overwriting a key never is. The rule is
decided inside each store's atomic step (the event loop in memory, a transaction on the head
document in Firestore), so two writers racing for the last slot store exactly one entry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from agentry_common.memory import MemoryEntry


@dataclass(frozen=True)
class Owner:
    """Whose store: the Agent, by namespace and uid (`agent`, its name, is recorded for people)."""

    namespace: str
    agent_uid: str
    agent: str = ""

    @property
    def doc_id(self) -> str:
        return f"{self.namespace}.{self.agent_uid}"


class Full(Exception):
    """A new key in a store holding `limit` entries already."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the memory holds {limit} entries, its limit (spec.memory.maxEntries): "
            "overwrite or delete an entry first"
        )
        self.limit = limit


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class MemoryStore(Protocol):
    async def entries(self, owner: Owner) -> list[MemoryEntry]:
        """Every entry, by key."""
        ...

    async def get(self, owner: Owner, key: str) -> MemoryEntry | None: ...

    async def put(self, owner: Owner, key: str, value: str, by: str, limit: int) -> MemoryEntry:
        """Store (or overwrite) one entry; `Full` for a new key past `limit`."""
        ...

    async def delete(self, owner: Owner, key: str) -> bool:
        """Whether the entry existed."""
        ...

    async def stores(self) -> list[Owner]:
        """Every store that holds entries (the operator's sweep of Agents that are gone)."""
        ...

    async def drop(self, owners: list[Owner]) -> int:
        """Delete these stores whole; how many existed."""
        ...

    async def close(self) -> None: ...
