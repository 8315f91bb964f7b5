"""The agent's tools. Only the tools listed in the Agent's spec.tools are offered and run."""

from __future__ import annotations

from agentry_common.models import AgentSpec
from agentry_common.models import Tool as ToolName

from .base import Assessment, Tool, ToolContext, ToolInputError, ToolOutcome
from .files import FilesTool
from .http import HttpTool
from .process import PythonTool, ShellTool

_REGISTRY: dict[ToolName, Tool] = {
    ToolName.SHELL: ShellTool(),
    ToolName.PYTHON: PythonTool(),
    ToolName.FILES: FilesTool(),
    ToolName.HTTP: HttpTool(),
}


def enabled_tools(spec: AgentSpec) -> dict[str, Tool]:
    return {name.value: _REGISTRY[name] for name in spec.tools}


__all__ = [
    "Assessment",
    "Tool",
    "ToolContext",
    "ToolInputError",
    "ToolOutcome",
    "enabled_tools",
]
