"""Run checkpoint journals (docs/runs.md, "Where checkpoints are stored"): the store the runtime
appends a run's progress to and reads it back from, with its run token
(agentry_common.checkpoints is the contract).

`store` holds the rules every store applies (seq continuity, exact retries, limits), `memory` and
`firestore` the two stores (chosen with the ledger: the same setting), `routes` the HTTP routes.
"""

from __future__ import annotations

from typing import Any

from .firestore import FirestoreCheckpointStore
from .memory import MemoryCheckpointStore
from .store import Appended, CheckpointStore, Conflict, Limits, Page, Refused, RunRef, TooLarge

__all__ = [
    "Appended",
    "CheckpointStore",
    "Conflict",
    "FirestoreCheckpointStore",
    "Limits",
    "MemoryCheckpointStore",
    "Page",
    "Refused",
    "RunRef",
    "TooLarge",
    "build_store",
]


def build_store(firestore_client: Any | None, retention_days: int) -> CheckpointStore:
    """In Firestore when the ledger is (its client), else in this process."""
    if firestore_client is None:
        return MemoryCheckpointStore()
    return FirestoreCheckpointStore(firestore_client, retention_days=retention_days)
