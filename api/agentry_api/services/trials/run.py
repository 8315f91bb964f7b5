"""Trying a chat draft: start the trial run, sweep ended trials, read its tool steps.

Why a hidden Agent rather than an inline spec: the operator, the gateway's budgets and the approval
flow all key on an Agent CR and an Execution of it, so a real Agent is what makes the trial the same
path as any run. It carries `agentry.dev/trial` and the user's owner label (so their budget), is
never stored in Firestore (`AgentService.observe` skips it: never listed, not counted against the
`agents` quota), has no schedule, and is deleted once its run ended; the operator made the Agent the
owner of its Execution, so Kubernetes collects the Execution, Job and Pod with it. The run's
Firestore document (`trial: true`) stays, counted like any run of the user.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from lightkube import ApiError
from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common import tracing
from agentry_common.models import Trigger, looks_like_secret
from agentry_common.resources import Agent, Execution

from ...auth import User
from ...cluster import Cluster, ClusterUnavailable, api_message
from ...schemas import AgentIn
from ...storage import Store
from ..agents import AgentService
from ..errors import Conflict, Invalid, OverQuota, Unavailable
from ..events import EventBus
from ..quotas import Quotas
from ..runs import accepted_doc, run_attributes
from ..views import execution_event
from .parts import (
    active,
    execution_manifest,
    mark_trial,
    to_sweep,
    tool_parts,
    trial_labels,
    trial_name,
    trial_spec,
)

log = logging.getLogger("agentry.api.trials")
Doc = dict[str, Any]
TTL = dt.timedelta(hours=1)  # a hidden Agent older than this is deleted whatever its run does
_TRACER = tracing.tracer("agentry.api.trials")


def draft_body(draft: Doc | None) -> AgentIn:
    """The conversation's current draft as an agent definition; Invalid (every error) if it is not one."""
    if not draft or not isinstance(draft.get("agent"), dict):
        raise Invalid(["draft"], "there is no draft to try yet: describe the agent first")
    try:
        return AgentIn.model_validate(draft["agent"])
    except ValidationError as exc:
        errors = [(["draft", *e["loc"]], str(e["msg"])) for e in exc.errors()]
        raise Invalid(errors[0][0], errors[0][1], errors[1:]) from exc


class TrialService:
    def __init__(
        self, store: Store, cluster: Cluster, bus: EventBus, agents: AgentService, quotas: Quotas
    ) -> None:
        self.store, self.cluster, self.bus, self.agents, self.quotas = store, cluster, bus, agents, quotas

    async def start(self, user: User, conv: Doc, input_text: str | None) -> Doc:
        """Run the conversation's draft once; returns the run's Firestore document."""
        if input_text and looks_like_secret(input_text):
            raise Invalid(["input"], "input contains what looks like an API key; use the agent's secrets")
        body = draft_body(conv.get("draft"))
        await self.agents.enforce_policy(body.spec)  # the policy of now, not of when it was drafted
        running, most = await self.sweep(user), self.quotas.limits(user).concurrent_trials
        if running >= most:
            raise OverQuota(
                "concurrent_trials",
                most,
                f"quota reached: at most {most} trials at once; wait for one to finish",
                30,
            )
        await self.quotas.run_start(user)  # a trial is a run: concurrent_runs and runs_per_day
        name, correlation_id = trial_name(), uuid.uuid4().hex
        doc = {
            **accepted_doc(name, user.id, name, Trigger.API, correlation_id, input_text),
            "trial": True,
            "conversation": conv["id"],
        }
        agent = self.cluster.agent_manifest(
            name, trial_spec(body.spec.wire()), user.owner_label, body.name, guest=user.kind == "guest"
        )
        try:
            await self.cluster.apply_agent(mark_trial(agent, user.owner_label))
            await self.store.put_execution(doc)
            await self._create(name, input_text, correlation_id, user.owner_label)
        except (ClusterUnavailable, ApiError) as exc:
            await self._undo(name)
            if isinstance(exc, ClusterUnavailable):
                raise Unavailable(
                    "the trial was not started: the cluster is unavailable (retry shortly)"
                ) from exc
            raise Conflict(f"the cluster refused the trial: {api_message(exc)}") from exc
        await self.bus.publish(
            user.id, "execution", execution_event(doc, "accepted"), dedupe_key=f"ex:{name}:accepted"
        )
        log.info("trial %s accepted correlation_id=%s", name, correlation_id)
        return doc

    async def _create(self, name: str, input_text: str | None, correlation_id: str, owner: str) -> None:
        with tracing.span(_TRACER, tracing.SPAN_CREATE_EXECUTION, run_attributes(name, name, correlation_id)):
            manifest = execution_manifest(
                self.cluster.namespace, name, input_text, correlation_id, owner, tracing.trace_annotations()
            )
            await self.cluster.create_object(Execution, manifest)

    async def _undo(self, name: str) -> None:
        await self.store.delete_execution(name)
        try:
            await self.cluster.delete_agent(name)
        except (ClusterUnavailable, ApiError) as exc:  # the next sweep deletes it
            log.warning("trial %s: hidden agent not deleted yet: %s", name, exc)

    async def sweep(self, user: User | None) -> int:
        """Delete the user's hidden Agents (every user's, with None: the watcher's periodic pass) whose
        run is over (or too old); returns how many trials still run."""
        labels = trial_labels(user.owner_label) if user is not None else {c.LABEL_TRIAL: "true"}
        try:
            agents = await self.cluster.list_objects(Agent, labels)
            executions = await self.cluster.list_objects(Execution, labels)
        except ClusterUnavailable as exc:
            raise Unavailable("the cluster is unavailable (retry shortly)") from exc
        for name in to_sweep(agents, executions, dt.datetime.now(dt.UTC), TTL):
            await self.finish(name)
        return active(executions)

    async def finish(self, name: str) -> None:
        """Delete a trial's hidden Agent (its Execution, Job and Pod are collected with it)."""
        try:
            await self.cluster.delete_agent(name)
        except (ClusterUnavailable, ApiError) as exc:  # the next sweep deletes it
            log.warning("trial %s: hidden agent not deleted yet: %s", name, exc)

    async def live_tool_steps(self, name: str, seen: set[str]) -> AsyncIterator[Doc]:
        """Tool calls and results as the run's pod logs them (the log followed), not shown yet."""
        doc = await self.store.execution(name)
        job = (doc or {}).get("jobName")
        if not job:
            return
        try:
            async for line in self.cluster.follow_pod_log(job):
                for part in tool_parts([line], seen):
                    yield part
        except (ClusterUnavailable, ApiError, httpx.HTTPError) as exc:  # the end-of-run read catches up
            log.info("trial %s: pod log not followed: %s", name, exc)

    async def tool_steps(self, name: str, seen: set[str]) -> list[Doc]:
        """The tool calls and results the run's pod has logged and the chat has not shown yet."""
        doc = await self.store.execution(name)
        job = (doc or {}).get("jobName")
        if not job:
            return []
        try:
            found = await self.cluster.pod_logs(job)
        except (ClusterUnavailable, ApiError) as exc:
            log.info("trial %s: pod log not read: %s", name, exc)
            return []
        return tool_parts(found[1], seen) if found is not None else []
