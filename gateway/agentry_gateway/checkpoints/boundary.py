"""A run's model call is its turn boundary (agentry_common.steering): the runtime names the highest
inbox seq it has taken or holds, and the call is refused (409 `steering_queued`), before it is
charged or sent upstream, while a message is queued beyond it. So the runtime need not wait for an
append's answer before each call to learn of a message, and none waits a turn longer than it must.

The call may also carry the run's staged journal entries (agentry_common.checkpoints.RIDING_HEADER):
they are stored under the append route's rules once the call's request has gone upstream (so the
store's work overlaps the provider's), and its answer waits for that store and names the last entry
stored. Entries that cannot be stored are not: the call goes on, and its answer names none, so the
runtime appends them itself (and learns of a fence there)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pydantic import ValidationError

from agentry_common.checkpoints import RIDING_HEADER, decode_riding
from agentry_common.governance import RefusalType, budget_subjects
from agentry_common.steering import INBOX_SEEN_HEADER
from agentry_common.tokens import Claims

from ..calls import Rejected, RidingStore, Spawn
from ..ledger import Ledger
from ..metrics import Metrics
from .store import Appended, Batch, CheckpointStore, Conflict, Refused, RunRef

log = logging.getLogger("agentry.gateway.checkpoints")


async def run_ended(ledger: Ledger, claims: Claims) -> float | None:
    """When the token's run ended (its journal takes nothing more), or None."""
    subject = budget_subjects(claims.namespace, "-", claims.execution, claims.execution_uid, None).execution
    return await ledger.ended_at(subject)


def own_run(claims: Claims) -> RunRef:
    return RunRef(claims.namespace, claims.execution_uid, claims.execution, claims.agent)


def record(metrics: Metrics, done: Appended) -> None:
    metrics.checkpoint_appends.labels("stored" if done.written else "repeated").inc()
    metrics.checkpoint_bytes.inc(done.written)


def store_riding(
    store: CheckpointStore,
    ledger: Ledger,
    metrics: Metrics,
    claims: Claims,
    headers: Mapping[str, str],
    spawn: Spawn,
) -> RidingStore | None:
    """What stores the entries riding a run's call (once the call is on its way upstream), or None
    when none ride it."""
    value = headers.get(RIDING_HEADER)
    if value is None or claims.typ != "run" or not claims.execution_uid:
        return None
    return RidingStore(_store(store, ledger, metrics, claims, value), spawn)


async def _store(
    store: CheckpointStore, ledger: Ledger, metrics: Metrics, claims: Claims, value: str
) -> int | None:
    try:
        request = decode_riding(value)
        if await run_ended(ledger, claims) is not None:
            return None  # the call itself is refused as the run's (its budget check)
        batch = Batch.of(request.entries, store.limits, request.encoded)  # stored as sent
        done = await store.append(own_run(claims), batch, request.delivered)
    except (ValueError, ValidationError) as exc:
        metrics.checkpoint_refused.labels("invalid").inc()
        log.info("entries riding a call of %s/%s not stored: %s", claims.namespace, claims.execution, exc)
        return None
    except Conflict:
        metrics.checkpoint_conflicts.inc()
        return None
    except Refused as exc:
        metrics.checkpoint_refused.labels(exc.reason).inc()
        return None
    except Exception as exc:  # the store failed: the runtime's own append retries
        log.warning("entries riding a call: the store failed: %s", type(exc).__name__)
        return None
    record(metrics, done)
    return done.last


async def queued_beyond(store: CheckpointStore, claims: Claims, headers: Mapping[str, str]) -> int:
    """The highest seq queued in the caller's run's inbox above the one the call names; 0 when none
    is, or the call names none (a person's designer turn, a runtime without a journal)."""
    seen = headers.get(INBOX_SEEN_HEADER)
    if seen is None or claims.typ != "run" or not claims.execution_uid or not seen.isdigit():
        return 0
    try:
        inbox = await store.inbox(RunRef(claims.namespace, claims.execution_uid), int(seen))
    except Exception as exc:  # steering is never a reason to stop a run: the call goes on
        log.warning(
            "steering check of %s/%s: the store failed: %s",
            claims.namespace,
            claims.execution,
            type(exc).__name__,
        )
        return 0
    return max((m.seq for m in inbox.messages), default=0)


async def check_boundary(store: CheckpointStore, claims: Claims, headers: Mapping[str, str]) -> None:
    """Raise the 409 when a steering message waits beyond what the call has seen."""
    queued = await queued_beyond(store, claims, headers)
    if queued:
        message = (
            f"Agentry gateway: steering message {queued} is queued for this run; read the inbox, "
            "deliver it, then call again"
        )
        raise Rejected(409, message, RefusalType.STEERING_QUEUED.value, outcome="steering")
