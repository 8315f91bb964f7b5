"""Workflows and their runs for one user: Workflow and WorkflowRun CRs in the workloads namespace.

Unlike Agents, nothing is kept in Firestore: the CRs carry the owner label (a hash of the user id)
and are listed by it, so the cluster is the one source of truth and there is nothing to sync
(docs/api.md, "Workflows"). Each step must name an Agent of the same user; graph rules are the
operator's admission webhook's, reached by a dry run and turned into a 422 naming the step and field.
Step Executions are ordinary runs of the user's Agents, mirrored like any other run.
"""

from __future__ import annotations

import re
from typing import Any

from lightkube import ApiError

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_common.resources import Workflow, WorkflowRun

from ..auth import User, owner_label
from ..cluster import (
    ANNOTATION_DISPLAY_NAME,
    LABEL_OWNER,
    MANAGED_BY_API,
    Cluster,
    api_message,
    random_suffix,
)
from ..schemas.workflows import BackfillIn, StepOut, WorkflowIn, WorkflowOut, WorkflowRunOut
from ..settings import Settings
from ..storage import Store
from .errors import Invalid, NotFound, OverQuota

Doc = dict[str, Any]
Loc = list[str | int]
# A workflow id leaves room for "-" and a random suffix within a run name's 40 characters.
MAX_ID_SLUG = 24
FIELD_AT = re.compile(r"(spec(?:\.[A-Za-z_][\w-]*|\[\d+\])+):\s")


def workflow_id(display_name: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")
    return f"{(text or 'workflow')[:MAX_ID_SLUG].rstrip('-') or 'workflow'}-{random_suffix()}"


def field_loc(field: str, prefix: Loc) -> Loc:
    """`spec.steps[1].dependsOn` -> [*prefix, "steps", 1, "dependsOn"] (the leading `spec` dropped)."""
    loc: Loc = list(prefix)
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field)[1:]:
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return loc


def refusal_errors(message: str, prefix: Loc) -> list[tuple[Loc, str]]:
    """Each `spec.FIELD: why` in an API server refusal (the webhook joins several with "; ")."""
    hits = list(FIELD_AT.finditer(message))
    if not hits:
        return [(list(prefix), message)]
    found: list[tuple[Loc, str]] = []
    for hit, after in zip(hits, [*hits[1:], None], strict=True):
        text = message[hit.start() : after.start() if after else len(message)].rstrip("; ")
        found.append((field_loc(hit.group(1), prefix), text))
    return found


def refused(exc: ApiError, prefix: Loc, what: str) -> Invalid:
    (loc, msg), *more = refusal_errors(api_message(exc), prefix)
    return Invalid(loc, f"the cluster refused the {what}: {msg}", more)


def workflow_manifest(namespace: str, ident: str, body: WorkflowIn, owner: str) -> Doc:
    return {
        "apiVersion": c.API_VERSION,
        "kind": w.WORKFLOW_KIND,
        "metadata": {
            "name": ident,
            "namespace": namespace,
            "labels": {LABEL_OWNER: owner, c.LABEL_MANAGED_BY: MANAGED_BY_API},
            "annotations": {ANNOTATION_DISPLAY_NAME: body.name},
        },
        "spec": body.spec.wire(),
    }


def run_manifest(namespace: str, ident: str, parameters: dict[str, str], owner: str) -> Doc:
    return {
        "apiVersion": c.API_VERSION,
        "kind": w.WORKFLOW_RUN_KIND,
        "metadata": {
            "name": f"{ident}-{random_suffix(6)}",
            "namespace": namespace,
            "labels": {LABEL_OWNER: owner, w.LABEL_WORKFLOW: ident, c.LABEL_MANAGED_BY: MANAGED_BY_API},
        },
        "spec": {"workflowRef": {"name": ident}, "parameters": parameters},
    }


def workflow_out(cr: Doc) -> WorkflowOut:
    meta = cr["metadata"]
    return WorkflowOut(
        id=meta["name"],
        name=(meta.get("annotations") or {}).get(ANNOTATION_DISPLAY_NAME) or meta["name"],
        spec=cr.get("spec") or {},
        lastRun=(cr.get("status") or {}).get("lastRun"),
        status=cr.get("status") or {},
        createdAt=meta.get("creationTimestamp"),
    )


def run_out(run: Doc, spec: Doc) -> WorkflowRunOut:
    """A run with one row per step of its Workflow (in spec order, with its dependencies for the
    graph), merged with the operator's status of each; steps only in the status come last."""
    status = run.get("status") or {}
    recorded = {s["name"]: s for s in status.get("steps") or []}
    steps = [
        StepOut(
            **{
                "phase": w.StepPhase.PENDING,
                **recorded.get(s["name"], {}),
                "name": s["name"],
                "agent": s["agentRef"]["name"],
                "dependsOn": s.get("dependsOn") or [],
            }
        )
        for s in spec.get("steps") or []
    ]
    known = {s.name for s in steps}
    steps += [StepOut(**{**s, "agent": "", "dependsOn": []}) for n, s in recorded.items() if n not in known]
    return WorkflowRunOut(
        name=run["metadata"]["name"],
        workflow=run["spec"]["workflowRef"]["name"],
        parameters=run["spec"].get("parameters") or {},
        phase=status.get("phase") or w.RunPhase.PENDING,
        reason=status.get("reason"),
        message=status.get("message"),
        progress=status.get("progress"),
        createdAt=run["metadata"].get("creationTimestamp"),
        startTime=status.get("startTime"),
        completionTime=status.get("completionTime"),
        steps=steps,
        totals=status.get("totals") or {"tokens": 0, "costUSD": "0"},
    )


def owned_by(cr: Doc | None, user: User, import_owner: str) -> bool:
    """The owner label says whose a Workflow is; one without it was made with kubectl and is the
    import owner's (as Agents made with kubectl are)."""
    if cr is None:
        return False
    label = (cr["metadata"].get("labels") or {}).get(LABEL_OWNER)
    return label == owner_label(user.id) if label else user.id == import_owner


class WorkflowService:
    def __init__(self, store: Store, cluster: Cluster, settings: Settings) -> None:
        self.store, self.cluster, self.settings = store, cluster, settings

    def mine(self, cr: Doc | None, user: User) -> bool:
        return owned_by(cr, user, self.settings.import_owner)

    async def owned(self, user: User) -> list[Doc]:
        if user.id == self.settings.import_owner:
            items = [cr for cr in await self.cluster.list_objects(Workflow, {}) if self.mine(cr, user)]
        else:
            items = await self.cluster.list_objects(Workflow, {LABEL_OWNER: owner_label(user.id)})
        return sorted(items, key=lambda cr: str(cr["metadata"].get("creationTimestamp") or ""))

    async def get(self, user: User, ident: str) -> Doc:
        cr = await self.cluster.get_object(Workflow, ident)
        if not self.mine(cr, user):
            raise NotFound(f"workflow {ident!r} not found")
        assert cr is not None
        return cr

    async def check_quota(self, user: User, body: WorkflowIn, editing: str | None = None) -> None:
        """`workflows` on create; a schedule (on create, or an edit adding one) also counts against
        `scheduled_agents`, with the user's scheduled Agents: both start runs without anyone asking."""
        limits = self.settings.limits_of(user.kind)
        owned = await self.owned(user)
        if editing is None and len(owned) >= limits.workflows:
            raise OverQuota(
                "workflows", limits.workflows, f"quota reached: at most {limits.workflows} workflows"
            )
        had = any(
            cr["metadata"]["name"] == editing and (cr.get("spec") or {}).get("schedule") for cr in owned
        )
        if body.spec.schedule is None or had:
            return
        scheduled = sum(1 for cr in owned if (cr.get("spec") or {}).get("schedule"))
        scheduled += (await self.store.count_agents(user.id))[1]
        if scheduled >= limits.scheduled_agents:
            raise OverQuota(
                "scheduled_agents",
                limits.scheduled_agents,
                f"quota reached: at most {limits.scheduled_agents} agents and workflows with a schedule",
            )

    async def check_agents(self, user: User, body: WorkflowIn) -> None:
        """Every step names an Agent of this user (another's, or none: the same answer)."""
        found: list[tuple[Loc, str]] = []
        for i, step in enumerate(body.spec.steps):
            agent = await self.store.owned_agent(user.id, step.agentRef.name)
            if agent is None or agent.get("deleted"):
                name = step.agentRef.name
                msg = f"steps[{i}].agentRef: no agent {name!r} of yours (use an id of /api/agents)"
                found.append((["body", "spec", "steps", i, "agentRef", "name"], msg))
        if found:
            (loc, msg), *more = found
            raise Invalid(loc, msg, more)

    async def _write(self, manifest: Doc, create: bool) -> Doc:
        """A dry run first (the webhook's graph checks, as a 422), then the write."""
        write = self.cluster.create_object if create else self.cluster.replace_object
        try:
            await write(Workflow, manifest, dry_run=True)
        except ApiError as exc:
            if exc.status.code is not None and 400 <= exc.status.code < 500 and exc.status.code != 409:
                raise refused(exc, ["body", "spec"], "workflow") from exc
            raise
        return await write(Workflow, manifest)

    async def create(self, user: User, body: WorkflowIn) -> Doc:
        await self.check_quota(user, body)
        await self.check_agents(user, body)
        manifest = workflow_manifest(
            self.cluster.namespace, workflow_id(body.name), body, owner_label(user.id)
        )
        return await self._write(manifest, create=True)

    async def update(self, user: User, ident: str, body: WorkflowIn) -> Doc:
        current = await self.get(user, ident)
        await self.check_quota(user, body, editing=ident)
        await self.check_agents(user, body)
        manifest = workflow_manifest(self.cluster.namespace, ident, body, owner_label(user.id))
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return await self._write(manifest, create=False)

    async def delete(self, user: User, ident: str) -> None:
        """The Workflow and every run of it (their steps go with them)."""
        await self.get(user, ident)
        for run in await self.runs(user, ident):
            await self.cluster.delete_object(WorkflowRun, run["metadata"]["name"])
        await self.cluster.delete_object(Workflow, ident)

    async def start(self, user: User, ident: str, parameters: dict[str, str]) -> Doc:
        await self.get(user, ident)
        manifest = run_manifest(self.cluster.namespace, ident, parameters, owner_label(user.id))
        try:
            return await self.cluster.create_object(WorkflowRun, manifest)
        except ApiError as exc:
            if exc.status.code is not None and 400 <= exc.status.code < 500:
                raise refused(exc, ["body"], "run") from exc
            raise

    async def backfill(self, user: User, ident: str, body: BackfillIn) -> Doc:
        """Set spec.schedule.backfill: the operator starts each fire time of the range once (the
        webhook refuses a range of more than 10, as a 422)."""
        current = await self.get(user, ident)
        if not (current.get("spec") or {}).get("schedule"):
            raise Invalid(
                ["body"], f"workflow {ident!r} has no schedule: there are no fire times to backfill"
            )
        patch = {"spec": {"schedule": {"backfill": body.rfc3339()}}}
        try:
            await self.cluster.merge_patch_object(Workflow, ident, patch, dry_run=True)
        except ApiError as exc:
            if exc.status.code is not None and 400 <= exc.status.code < 500:
                raise refused(exc, ["body"], "backfill") from exc
            raise
        return await self.cluster.merge_patch_object(Workflow, ident, patch)

    async def runs(self, user: User, ident: str) -> list[Doc]:
        """Every run of a Workflow of the user's: started through the API, with kubectl, or by its
        schedule. Selected by the run's `spec.workflowRef.name` (a selectable field of the CRD), not
        by a label: a run made with kubectl need carry none, and whose it is follows the Workflow."""
        await self.get(user, ident)
        items = await self.cluster.list_objects(WorkflowRun, {}, fields={w.FIELD_RUN_WORKFLOW: ident})
        mine = [r for r in items if r["spec"]["workflowRef"]["name"] == ident]
        return sorted(mine, key=lambda cr: str(cr["metadata"].get("creationTimestamp") or ""), reverse=True)

    async def run(self, user: User, name: str) -> WorkflowRunOut:
        """A run is the user's when its Workflow is (or, the Workflow gone, when it says so itself)."""
        run = await self.cluster.get_object(WorkflowRun, name)
        workflow = None
        if run is not None:
            workflow = await self.cluster.get_object(Workflow, run["spec"]["workflowRef"]["name"])
        if run is None or not self.mine(workflow or run, user):
            raise NotFound(f"workflow run {name!r} not found")
        return run_out(run, (workflow or {}).get("spec") or {})
