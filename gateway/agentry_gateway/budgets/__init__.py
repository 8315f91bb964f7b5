"""Budgets over time windows, throttling zones, reservations, and the decisions made from them.

Pure logic (no I/O): the gateway keeps the counters in Firestore (`agentry_gateway.ledger`) and
answers the operator's admission questions from them. docs/governance.md explains the model; in short:

* A **policy** puts **limits** on a **subject** (a user, an agent, one Execution, a namespace, the
  whole installation) over a **window**:
  rolling hours (`5h`), the calendar `day` or `month` (in one configured time zone), or the run's
  `total`. A limit counts `tokens` (input + output), `messages` (model calls) or `costUSD`.
* A **counter** (one document per subject) holds settled usage in time buckets and calendar keys,
  plus open **reservations**: before a call, its worst case (input estimate + `max_tokens` output)
  is reserved; after it, the reservation is replaced by the actual usage (reserve-then-settle).
* **Use** of a limit = settled + reserved. Its percentage picks the **zone**: below 80 % normal;
  80-95 % throttle (cheaper model; low priority waits); 95-100 % critical (only high priority);
  100 % exhausted. The limit with the highest percentage decides and is named in the explanation.
"""

from .amounts import (
    BYTES_PER_TOKEN_ESTIMATE,
    RESERVATION_TTL_SECONDS,
    Amount,
    Metric,
    call_amount,
    estimate_call,
    estimate_input_tokens,
)
from .counters import Counter, Reservation, counter_id, scope_subject
from .decide import CheaperModel, decide_admission, decide_call
from .policies import RUN_POLICY, BudgetPolicy, Calendar, Limit, Thresholds, Window, applicable, run_policy
from .states import Decision, LimitState, Subject

__all__ = [
    "BYTES_PER_TOKEN_ESTIMATE",
    "RESERVATION_TTL_SECONDS",
    "RUN_POLICY",
    "Amount",
    "BudgetPolicy",
    "Calendar",
    "CheaperModel",
    "Counter",
    "Decision",
    "Limit",
    "LimitState",
    "Metric",
    "Reservation",
    "Subject",
    "Thresholds",
    "Window",
    "applicable",
    "call_amount",
    "counter_id",
    "decide_admission",
    "decide_call",
    "estimate_call",
    "estimate_input_tokens",
    "run_policy",
    "scope_subject",
]
