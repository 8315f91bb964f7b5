"""Follow-ups (docs/runs.md, "Follow-ups"): the reply body, and a run's thread."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from . import ExecutionOut, Strict

Relation = Literal["ancestor", "self", "continuation"]


class MessageIn(Strict):
    message: str = Field(
        min_length=1,
        max_length=65536,
        description="The next user message: the follow-up's spec.input, after the parent's conversation.",
    )

    @field_validator("message")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message is blank: write what the agent should do next")
        return value


class ThreadRun(BaseModel):
    """One run of a thread: an ancestor, the run asked about, or a continuation."""

    name: str
    relation: Relation
    parent: str | None = Field(default=None, description="The run it continues (none for the first).")
    phase: str
    createdAt: str
    tokens: int = Field(description="Input plus output tokens of this run alone.")
    costUSD: str = Field(description="What this run alone cost.")


class ExecutionDetail(ExecutionOut):
    thread: list[ThreadRun] = Field(
        default_factory=list,
        description="The run's ancestors (the first run first), the run itself, then its continuations "
        "(at any depth, oldest first); only the caller's runs.",
    )
