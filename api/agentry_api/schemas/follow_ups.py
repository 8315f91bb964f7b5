"""Follow-ups (docs/runs.md, "Follow-ups"): a run's thread (the message body: schemas/steering.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from . import ExecutionOut

Relation = Literal["ancestor", "self", "continuation"]


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
