"""What every tool has: a schema for the model, an inherent risk, a refusal rule, and run()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from agentry_common.models import Risk
from agentry_llm.types import ToolSpec

TRUNCATION_MARKER = "\n[... {n} bytes truncated ...]\n"


@dataclass(frozen=True)
class ToolContext:
    workspace: Path
    env: Mapping[str, str]  # already stripped of provider keys
    timeout: float
    max_output: int
    allowed_hosts: tuple[str, ...] = ()


@dataclass
class ToolOutcome:
    content: str
    is_error: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """A tool's own view of one call: its risk, or why it must not run at all."""

    risk: Risk
    refusal: str | None = None


class ToolArgs(BaseModel):
    # Unknown arguments are an error the model can read and fix.
    model_config = ConfigDict(extra="forbid")


A = TypeVar("A", bound=ToolArgs)


class ToolInputError(Exception):
    pass


def parse_args(model: type[A], raw: Mapping[str, Any]) -> A:
    try:
        return model.model_validate(dict(raw))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in err.errors()
        )
        raise ToolInputError(f"invalid arguments: {problems}") from None


class Tool(Protocol):
    name: str

    def spec(self, ctx: ToolContext) -> ToolSpec: ...

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment: ...

    def describe(self, args: Mapping[str, Any]) -> str:
        """One line for events and approval requests."""
        ...

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        """True when running this call twice has the effect of running it once (reading, listing,
        setting a value): a call a lost pod started is then run again on resume instead of being
        reported to the model as interrupted."""
        ...

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome: ...


def truncate_bytes(data: bytes, limit: int) -> tuple[str, int]:
    """Keep the head and the tail (errors are usually at the end); returns text and bytes cut."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace"), 0
    head = limit // 2
    tail = limit - head
    cut = len(data) - limit
    text = (
        data[:head].decode("utf-8", errors="replace")
        + TRUNCATION_MARKER.format(n=cut)
        + data[len(data) - tail :].decode("utf-8", errors="replace")
    )
    return text, cut


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
