"""WorkflowRun changes on the user's event stream (`report` events of kind `workflowRun`), so the
run page follows each step's phase live, as the run pages of single Executions do.

The watcher hands every WorkflowRun watch event here. Whose run it is: the Workflow's, and a
Workflow's owner is known by its label (a hash of the user id) — so the user id is taken from the
Agent of its first step (the API lets a user's Workflow name only that user's Agents; Agents made
with kubectl are the import owner's), and used only when its hash matches the Workflow's label (a
Workflow without one is the import owner's). The dedupe key is the run's uid and a digest of its
view, so replicas watching the same run, and relists, publish each change once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from agentry_common.resources import Workflow

from ..auth import owner_label
from ..cluster import LABEL_OWNER, Cluster
from ..storage import Store
from .events import EventBus
from .workflows import run_out

log = logging.getLogger("agentry.api.workflow_feed")
Doc = dict[str, Any]
KIND = "workflowRun"
CACHE_SECONDS = 5.0  # a Workflow read serves the burst of events of its runs' step changes


class WorkflowRunFeed:
    def __init__(self, store: Store, cluster: Cluster, bus: EventBus, import_owner: str) -> None:
        self.store, self.cluster, self.bus, self.import_owner = store, cluster, bus, import_owner
        self._workflows: dict[str, tuple[float, Doc | None, str | None]] = {}

    async def observe(self, event: str, run: Doc) -> Doc | None:
        """Publish the run's view to its owner; the event published, or None (nothing new, no owner)."""
        if event == "DELETED":
            return None
        workflow, user = await self._workflow(str(run["spec"]["workflowRef"]["name"]))
        if workflow is None or user is None:
            return None
        view = run_out(run, workflow.get("spec") or {}).model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:20]
        key = f"wfr:{run['metadata'].get('uid')}:{digest}"
        return await self.bus.publish(
            user, KIND, {"action": "status", "workflowRun": view["name"], "run": view}, key
        )

    async def owner(self, workflow: Doc) -> str | None:
        label = (workflow["metadata"].get("labels") or {}).get(LABEL_OWNER)
        if label is None:
            return self.import_owner
        steps = (workflow.get("spec") or {}).get("steps") or []
        agent = await self.store.agent(str(steps[0]["agentRef"]["name"])) if steps else None
        user = str(agent["userId"]) if agent and agent.get("userId") else None
        if user is not None and owner_label(user) == label:
            return user
        log.debug("workflow %s: no user of its owner label found", workflow["metadata"]["name"])
        return None

    async def _workflow(self, name: str) -> tuple[Doc | None, str | None]:
        """The Workflow and its owner, read once per CACHE_SECONDS for the burst of its runs' events."""
        now = time.monotonic()
        cached = self._workflows.get(name)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1], cached[2]
        found = await self.cluster.get_object(Workflow, name)
        user = await self.owner(found) if found is not None else None
        if len(self._workflows) > 1000:
            self._workflows.clear()
        self._workflows[name] = (now, found, user)
        return found, user
