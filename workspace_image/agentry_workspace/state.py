"""What a run saves when it stops for approval, and what it is given to resume.

The state is opaque to the operator and the API: they carry it from the approval_request event
(or <workspace>/.agentry/state.json) back into resume.json unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from agentry_common.models import Risk
from agentry_llm.types import Message, ToolResultBlock, ToolUseBlock

STATE_VERSION = 1


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def approval_id(execution: str, tool_use_id: str) -> str:
    """Deterministic: the same pending call of the same execution always has the same id."""
    digest = hashlib.sha256(f"{execution}/{tool_use_id}".encode()).hexdigest()
    return f"apr-{digest[:16]}"


class PendingApproval(_Wire):
    approval_id: str
    tool_use: ToolUseBlock
    risk: Risk
    reason: str


class RunState(_Wire):
    version: int = STATE_VERSION
    execution: str
    agent: str
    messages: list[Message]
    # Results already produced for the tool calls of the same assistant turn, before the pending one.
    completed_results: list[ToolResultBlock] = Field(default_factory=list)
    pending: PendingApproval
    # Tool calls of the same turn after the pending one; each is assessed again on resume.
    remaining: list[ToolUseBlock] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # named outputs set before the pause


class Decision(_Wire):
    approval_id: str
    approved: bool
    decided_by: str = ""
    reason: str = ""

    @field_validator("decided_by", "reason", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value  # null: an older operator wrote what it had


class ResumeRequest(_Wire):
    state: RunState
    decision: Decision
