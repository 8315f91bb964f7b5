"""Memory across runs (docs/runs.md, "Memory across runs"): one bounded store per Agent (by its uid),
which a run reaches with its run token (the `mem` claim), the API and the operator with a service
token (agentry_common.memory is the contract).

`store` holds the rules every store applies (limits, who wrote), `local` and `firestore` the two
stores (chosen with the ledger, as the checkpoint journals), `routes` the HTTP routes.
"""

from __future__ import annotations

from typing import Any

from .firestore import FirestoreMemoryStore
from .local import LocalMemoryStore
from .store import Full, MemoryStore, Owner

__all__ = ["FirestoreMemoryStore", "Full", "LocalMemoryStore", "MemoryStore", "Owner", "build_store"]


def build_store(firestore_client: Any | None) -> MemoryStore:
    """In Firestore when the ledger is (its client), else in this process."""
    if firestore_client is None:
        return LocalMemoryStore()
    return FirestoreMemoryStore(firestore_client)
