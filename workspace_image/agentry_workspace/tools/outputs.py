"""`set_output`: how a run reports the named outputs its Execution asks for (`spec.outputs`, from a
Workflow step) — later steps read them as `{{ steps.NAME.outputs.KEY }}`. Only the names asked for
are accepted; values are kept in the run's result (bounded: they travel in the 4 KiB termination
message). It changes nothing outside the run, so it is GREEN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from agentry_common import outputs
from agentry_common.models import Risk
from agentry_llm.types import ToolSpec

from .base import Assessment, ToolArgs, ToolContext, ToolOutcome, one_line, parse_args


class OutputArgs(ToolArgs):
    name: str = Field(min_length=1, max_length=63)
    value: str


class OutputsTool:
    name = outputs.TOOL_NAME

    def __init__(self, names: Sequence[str], values: Mapping[str, str] | None = None) -> None:
        self.names = tuple(names)
        self.values: dict[str, str] = dict(values or {})

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=(
                "Record one of the named outputs this run must report, for the workflow steps that "
                f"follow. Names: {', '.join(self.names)}. Setting a name again replaces its value; at "
                f"most {outputs.MAX_VALUE_BYTES} bytes each, {outputs.MAX_TOTAL_BYTES} in all."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": list(self.names)},
                    "value": {"type": "string"},
                },
                "required": ["name", "value"],
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        return Assessment(Risk.GREEN)

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return True  # setting a value again changes nothing

    def describe(self, args: Mapping[str, Any]) -> str:
        return f"{args.get('name')} = {one_line(str(args.get('value', '')), 120)}"

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(OutputArgs, args)
        if parsed.name not in self.names:
            return ToolOutcome(f"unknown output {parsed.name!r}: use one of {', '.join(self.names)}", True)
        trial = outputs.bounded({**self.values, parsed.name: parsed.value})
        if parsed.name not in trial:
            room = outputs.MAX_TOTAL_BYTES - sum(
                len(v.encode()) for k, v in self.values.items() if k != parsed.name
            )
            return ToolOutcome(
                f"no room for {parsed.name}: {room} bytes left of {outputs.MAX_TOTAL_BYTES}", True
            )
        self.values = trial
        cut = len(trial[parsed.name]) < len(parsed.value)
        note = f" (cut to {outputs.MAX_VALUE_BYTES} bytes)" if cut else ""
        return ToolOutcome(f"output {parsed.name} recorded{note}", details={"output": parsed.name})
