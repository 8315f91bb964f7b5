"""The Agent, Execution, Workflow, WorkflowRun and Trigger custom resources as lightkube classes (needs the
`kube` extra), and lightkube's decoders built before a process starts its threads.

Defined once: `create_namespaced_resource` registers a class per group/version/kind, so the operator
and the API must name the same one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import msgspec
from lightkube.core import decoders
from lightkube.generic_resource import create_namespaced_resource

from . import constants as c
from . import triggers as t
from . import workflows as w

Agent = create_namespaced_resource(c.GROUP, c.VERSION, c.AGENT_KIND, c.AGENT_PLURAL)
Execution = create_namespaced_resource(c.GROUP, c.VERSION, c.EXECUTION_KIND, c.EXECUTION_PLURAL)
Workflow = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_KIND, w.WORKFLOW_PLURAL)
WorkflowRun = create_namespaced_resource(c.GROUP, c.VERSION, w.WORKFLOW_RUN_KIND, w.WORKFLOW_RUN_PLURAL)
Trigger = create_namespaced_resource(c.GROUP, c.VERSION, t.TRIGGER_KIND, t.TRIGGER_PLURAL)


def prime_decoders(kinds: Iterable[type]) -> None:
    """Build lightkube's msgspec decoders of these typed kinds and their lists, of watch events and of
    Status, now, on this thread.

    msgspec builds a type's decoder at its first use, and two threads doing that at once for one type
    crash the process (SIGSEGV: a Pod list decoded on two threads does it at every try). A process
    that decodes lightkube objects on more than one thread calls this before starting them.
    """
    decoders.decode_watch_event(b'{"type": "ADDED", "object": {}}')
    decoders.decode_status(b"{}")
    for kind in kinds:
        decoders.decode_list(b'{"items": []}', kind)
        if issubclass(kind, msgspec.Struct):  # typed; a generic resource decodes as a plain dict
            msgspec.json.Decoder(kind)


def loaded_kinds() -> list[type]:
    """Every typed kind of the lightkube resource modules imported so far."""
    return [
        value
        for name, module in list(sys.modules.items())
        if name.startswith("lightkube.resources.")
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, msgspec.Struct) and value.__module__ == name
    ]
