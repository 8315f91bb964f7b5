"""The Agent, Execution, Workflow, WorkflowRun and Trigger custom resources as lightkube classes (needs the
`kube` extra).

Defined once: `create_namespaced_resource` registers a class per group/version/kind, so the operator
and the API must name the same one.
"""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

from . import constants as c
from . import triggers as t
from . import workflows as w

Agent = create_namespaced_resource(c.GROUP, c.VERSION, c.AGENT_KIND, c.AGENT_PLURAL)
Execution = create_namespaced_resource(c.GROUP, c.VERSION, c.EXECUTION_KIND, c.EXECUTION_PLURAL)
Workflow = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_KIND, w.WORKFLOW_PLURAL)
WorkflowRun = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_RUN_KIND, w.WORKFLOW_RUN_PLURAL)
Trigger = create_namespaced_resource(c.GROUP, c.VERSION, t.TRIGGER_KIND, t.TRIGGER_PLURAL)
