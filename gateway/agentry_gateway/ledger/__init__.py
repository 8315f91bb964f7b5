"""Budget counters and call records: in Firestore (production) or in memory (one process).

Counters are documents `budgetCounters/<scope>:<subject>` (agentry_gateway.budgets.Counter): one per
user, agent and Execution, and, only while a budget of that scope applies, one per namespace and one
for the installation (`installation:all`). A call touches those of its run:

1. **reserve** (before the call, in one transaction over those documents): decide with
   `budgets.decide_call`; if allowed, write a reservation of the call's worst case into each.
2. **settle** (after it, in the background): replace the reservation by the actual usage.

When an Execution ends, the operator has its counter marked ended (`end_execution`): the next
reservation reads that and refuses, so a run token is dead once its run is over, not at its expiry.

Every document write goes through a per-user **combiner** (`base`: at most one transaction
per user in flight in a pod, the operations that arrive meanwhile applied together by the next).
Call records (`llmCalls/<id>`, one document per call, written once) carry the metering details.

With **leases** (the Firestore ledger's default; `leases`), a transaction that admits a call
may reserve spare estimates for the same counters, and the pod then admits their next calls from that
reservation without a transaction, settling them locally until the next one writes them. The shared
logic (subjects, the batch a transaction applies) is in `core`, the stores in `stores`, the gateway
pods' heartbeats in `pods`.
"""

from .base import Ledger
from .core import LedgerStats, Subjects
from .stores import FirestoreLedger, MemoryLedger

__all__ = ["FirestoreLedger", "Ledger", "LedgerStats", "MemoryLedger", "Subjects"]
