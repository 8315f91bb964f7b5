"""An Agent's memory as the API shows and edits it (docs/runs.md, "Memory across runs")."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from agentry_common.memory import MAX_VALUE_BYTES

from . import Strict


class MemoryEntryOut(BaseModel):
    key: str
    value: str
    updatedAt: str = Field(description="When it was last written (RFC 3339, UTC).")
    updatedBy: str = Field(description="The run that wrote it, or `user:<id>` for a person.")


class MemoryOut(BaseModel):
    enabled: bool = Field(description="spec.memory.enabled: whether runs get the memory tool.")
    maxEntries: int = Field(description="spec.memory.maxEntries: a new key past it is refused.")
    count: int
    entries: list[MemoryEntryOut] = Field(description="Every entry, by key.")


class MemoryValueIn(Strict):
    value: str = Field(description=f"Text, at most {MAX_VALUE_BYTES} bytes (UTF-8).")

    @field_validator("value")
    @classmethod
    def bounded(cls, value: str) -> str:
        size = len(value.encode())
        if size > MAX_VALUE_BYTES:
            raise ValueError(f"{size} bytes; at most {MAX_VALUE_BYTES}")
        return value
