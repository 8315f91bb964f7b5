"""Steering a live run (docs/runs.md, "Steering a live run"): the message body and the answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agentry_common.models import DoubleTexting, OnInterrupt
from agentry_common.steering import MAX_TEXT_CHARS, MessageState

from . import Strict


class MessageOrInterrupt(Strict):
    """`POST /api/executions/{id}/messages`: a message for a live run (steering) or a finished one (a
    follow-up); `interrupt` ends the live run's current turn (with or without a message)."""

    interrupt: bool = Field(default=False, description="End the live run's current turn first.")
    message: str = Field(
        default="",
        max_length=65536,
        validate_default=True,
        description="The next user message. For a live run at most "
        f"{MAX_TEXT_CHARS} characters, delivered at its next turn boundary; for a finished run the "
        "follow-up's input.",
    )

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and not info.data.get("interrupt"):
            raise ValueError("message is blank: write what the agent should do next (or interrupt)")
        return value


class InterruptIn(Strict):
    """`POST /api/executions/{id}/interrupt`: an optional message to go on with."""

    message: str = Field(default="", max_length=MAX_TEXT_CHARS)


class SteeringMessage(BaseModel):
    seq: int
    id: str
    text: str
    interrupt: bool
    by: str
    at: str
    state: MessageState = Field(
        description="queued (waits for the next turn boundary), delivered, superseded (replaced by a "
        "later one before delivery) or refused (the run ended first)"
    )


class Steered(BaseModel):
    delivery: Literal["steered"] = "steered"
    message: SteeringMessage
    superseded: list[int] = Field(default_factory=list, description="Seqs of queued messages it replaced.")
    pending: DoubleTexting = Field(description="The agent's double-texting policy (spec.steering.pending).")


class SteeringOut(BaseModel):
    """A run's steering messages and the agent's policies."""

    available: bool = Field(
        description="Whether the run can be steered now (live, runtime agentry, gateway)."
    )
    note: str | None = Field(default=None, description="Why not, when it cannot.")
    pending: DoubleTexting
    onInterrupt: OnInterrupt
    waitSeconds: int
    messages: list[SteeringMessage] = Field(default_factory=list)
