"""A run's steering inbox (agentry_common.steering): the rules every store applies (pure).

The inbox's state that an append needs is kept on the journal's head document (`InboxHead`): the
queued seqs, the last seq, how many messages, whether it is closed. So an append learns of queued
messages, marks delivered ones and closes the inbox without reading anything more than the head it
reads anyway; the messages themselves are documents of their own, written, never read, by an append.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentry_common.checkpoints import Close
from agentry_common.models import DoubleTexting
from agentry_common.steering import (
    MAX_MESSAGES,
    MAX_PENDING,
    Refusal,
    SteerMessage,
    SteerRequest,
)

from .store import Refused


class InboxRefused(Refused):
    """A message the inbox will not take: 409 (closed, pending) or 429 (full)."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(reason.value, detail)
        self.refusal = reason
        self.status = 429 if reason is Refusal.FULL else 409


@dataclass
class InboxHead:
    queued: list[int] = field(default_factory=list)
    last: int = 0
    count: int = 0
    closed: bool = False

    @property
    def hint(self) -> int:
        """What an append answers as `inbox`: the highest queued seq (0: none)."""
        return max(self.queued, default=0)

    @classmethod
    def of(cls, head: dict[str, Any]) -> InboxHead:
        return cls(
            queued=[int(s) for s in head.get("inboxQueued") or []],
            last=int(head.get("inboxLast", 0)),
            count=int(head.get("inboxCount", 0)),
            closed=bool(head.get("closed", False)),
        )

    def fields(self) -> dict[str, Any]:
        """The head document's inbox fields."""
        return {
            "inboxQueued": list(self.queued),
            "inboxLast": self.last,
            "inboxCount": self.count,
            "closed": self.closed,
        }


def admit(head: InboxHead, req: SteerRequest) -> tuple[SteerMessage, list[int]]:
    """The message to store (its seq the next) and the queued seqs it supersedes; `head` is updated.
    Raises InboxRefused: the run has ended, double-texting reject with a message queued, or full."""
    if head.closed:
        raise InboxRefused(Refusal.CLOSED, "the run has ended: continue it with a follow-up")
    if head.count >= MAX_MESSAGES:
        raise InboxRefused(Refusal.FULL, f"a run takes at most {MAX_MESSAGES} steering messages")
    superseded: list[int] = []
    if head.queued:
        if req.pending is DoubleTexting.REJECT:
            raise InboxRefused(
                Refusal.PENDING,
                f"message {head.queued[0]} is not delivered yet and the agent's steering.pending is "
                "reject: wait until it is delivered",
            )
        if req.pending is DoubleTexting.REPLACE:
            superseded, head.queued = list(head.queued), []
        elif len(head.queued) >= MAX_PENDING:
            raise InboxRefused(Refusal.FULL, f"{MAX_PENDING} messages are queued already; at most that many")
    head.last += 1
    head.count += 1
    head.queued.append(head.last)
    message = SteerMessage(
        seq=head.last,
        id=uuid.uuid4().hex[:16],
        text=req.text,
        interrupt=req.interrupt,
        by=req.by,
        at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return message, superseded


def take(head: InboxHead, delivered: Sequence[int], close: Close | None) -> tuple[list[int], list[int]]:
    """An append's effect on the inbox: the seqs to mark delivered and those to mark refused (an end
    with messages queued); `head` is updated. `close: idle` closes only when nothing stays queued."""
    marked = sorted({s for s in delivered if 0 < s <= head.last})
    head.queued = [s for s in head.queued if s not in marked]
    refused: list[int] = []
    if close is Close.END or (close is Close.IDLE and not head.queued):
        refused, head.queued = list(head.queued), []
        head.closed = True
    return marked, refused


def message_doc(message: SteerMessage) -> dict[str, Any]:
    return message.model_dump(mode="json")
