"""The Workflow and WorkflowRun custom resources (defined once, in agentry_common.resources)."""

from __future__ import annotations

from agentry_common.resources import Workflow, WorkflowRun

__all__ = ["Workflow", "WorkflowRun"]
