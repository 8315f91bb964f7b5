"""The chat designer's client frames that carry more than text (`WS /api/chat`, docs/api.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 8000


class TryFrame(BaseModel):
    """Run the conversation's current draft once ("try it")."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["try"]
    input: str | None = Field(default=None, max_length=MAX_TEXT, description="Task text for the trial run.")


class DecideFrame(BaseModel):
    """Decide an approval a trial asks for, from the chat."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["decide"]
    approval: str = Field(min_length=1, max_length=128)
    approved: bool
    reason: str | None = Field(default=None, max_length=1024)
