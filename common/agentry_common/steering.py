"""Steering a live run: the contract between the API, which posts a person's message to a Running run,
the LLM gateway, which keeps each run's inbox beside its journal, and the runtime, which delivers the
messages at its next turn boundary (docs/runs.md, "Steering a live run").

A message waits `queued` in the run's inbox until the runtime takes it: the runtime journals a `steer`
entry with it and names its inbox seq in the same append (`AppendRequest.delivered`), and the gateway
marks it `delivered` in that append's transaction. So a message is delivered once, and a pod that
resumes the run finds it in the journal. Every append's answer carries the inbox's highest queued seq
(`AppendAnswer.inbox`, kept on the journal's head document, which the append reads anyway): the
runtime asks for the inbox only when that is above what it has taken.

A model call is the turn boundary's last word: the runtime sends the highest inbox seq it has taken
or holds (`INBOX_SEEN_HEADER`) with each model call through the gateway, and the gateway answers
409 `steering_queued` (RefusalType), before the call is charged or sent upstream, when a message is
queued beyond it. The runtime then reads the inbox, delivers the message and calls again. So a turn
boundary waits for no append: the entries staged before the call are stored while it runs.

The run's last append closes the inbox (`AppendRequest.close`) in the same transaction: a message
posted after it is refused with `closed`, and the API makes a follow-up of it instead, so no message
is lost in the race with the run's end. `close: idle` closes only when nothing is queued (a final
answer: a queued message makes the run go on); `close: end` closes regardless (any other end; what
is still queued is reported `refused`).

Pure module: standard library and pydantic only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .checkpoints import Close
from .models import DoubleTexting

__all__ = ["Close"]  # the append's close (agentry_common.checkpoints), named here too

# -- HTTP (the gateway's routes) ------------------------------------------------------------------------

# POST, service token (the API): a message for a run. GET, service token: a run's messages, any state.
STEER_PATH: Final = "/v1/agentry/steer"
# GET, run token: the queued messages of the token's own run (`?after=N`, `?wait=S`: a long poll).
INBOX_PATH: Final = "/v1/agentry/inbox"
INBOX_COLLECTION: Final = "inbox"  # Firestore: below the run's runCheckpoints head document
# A run's model call through the gateway: the highest inbox seq the runtime has taken or holds.
INBOX_SEEN_HEADER: Final = "x-agentry-inbox-seen"

# -- limits ------------------------------------------------------------------------------------------------

MAX_TEXT_CHARS: Final = 8192
MAX_PENDING: Final = 20  # queued (undelivered) messages of one run; above: 429
MAX_MESSAGES: Final = 200  # messages of one run in every state; above: 429
MAX_WAIT_SECONDS: Final = 25  # a long poll of the inbox answers within this
POLL_SECONDS: Final = 1.0  # how often a long poll looks at the store


class MessageState(StrEnum):
    QUEUED = "queued"  # waiting for the run's next turn boundary
    DELIVERED = "delivered"  # in the conversation (and the journal)
    SUPERSEDED = "superseded"  # replaced by a later message before delivery (double-texting: replace)
    REFUSED = "refused"  # the run ended before it was delivered


class Refusal(StrEnum):
    """Why the gateway refuses a message (409/429 `reason`)."""

    CLOSED = "closed"  # the run has ended (journaled its end, or its token is ended): make a follow-up
    PENDING = "pending"  # double-texting reject: a message is still queued
    FULL = "full"  # MAX_PENDING or MAX_MESSAGES reached


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class SteerRequest(_Wire):
    """The API's message for a run. `text` may be empty only for an interrupt."""

    namespace: str = Field(min_length=1, max_length=63)
    execution: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64)
    text: str = Field(default="", max_length=MAX_TEXT_CHARS)
    interrupt: bool = False
    by: str = Field(min_length=1, max_length=200, description="who sent it (the person's name or id)")
    pending: DoubleTexting = DoubleTexting.QUEUE

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _something(self) -> SteerRequest:
        if not self.text and not self.interrupt:
            raise ValueError("text: a message that does not interrupt needs text")
        return self


class SteerMessage(_Wire):
    seq: int = Field(ge=1)
    id: str
    text: str = ""
    interrupt: bool = False
    by: str = ""
    at: str = ""
    state: MessageState = MessageState.QUEUED


class SteerAnswer(_Wire):
    """The stored message, and the seqs of earlier ones it superseded (double-texting replace)."""

    message: SteerMessage
    superseded: list[int] = Field(default_factory=list)


class SteerRefused(_Wire):
    """A 409/429 body: `reason` says what the caller does next (`closed`: a follow-up)."""

    detail: str
    reason: Refusal


class Inbox(_Wire):
    """A run's messages: for the runtime, the queued ones after `after`; for the API, every one.
    `last`: the highest queued seq (0: none), `closed`: the run journaled its end."""

    messages: list[SteerMessage] = Field(default_factory=list)
    last: int = 0
    closed: bool = False
