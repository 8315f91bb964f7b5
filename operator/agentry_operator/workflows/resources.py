"""The Workflow and WorkflowRun custom resources as lightkube classes."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from agentry_common import constants as c
from agentry_common import workflows as w

Workflow = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_KIND, w.WORKFLOW_PLURAL)
WorkflowRun = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_RUN_KIND, w.WORKFLOW_RUN_PLURAL)
