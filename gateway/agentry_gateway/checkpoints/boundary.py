"""A run's model call is its turn boundary (agentry_common.steering): the runtime names the highest
inbox seq it has taken or holds, and the call is refused (409 `steering_queued`), before it is
charged or sent upstream, while a message is queued beyond it. So the runtime need not wait for an
append's answer before each call to learn of a message, and none waits a turn longer than it must."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from agentry_common.governance import RefusalType
from agentry_common.steering import INBOX_SEEN_HEADER
from agentry_common.tokens import Claims

from ..calls import Rejected
from .store import CheckpointStore, RunRef

log = logging.getLogger("agentry.gateway.checkpoints")


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
