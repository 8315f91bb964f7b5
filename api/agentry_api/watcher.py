"""Background tasks started by the lifespan: watch Agents, Executions and WorkflowRuns, retry
pending Agent writes, deny approvals past their expiry, delete chat trials' hidden Agents left behind.

Watches restart from a fresh list after any error (with backoff); everything they do is idempotent
(view hashes and event dedupe keys), so a restart, or two replicas doing the same, publish each
change once. After each (re)list, API-owned agents missing from the cluster are re-created and
imported ones that vanished are dropped: deletions missed while disconnected are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentry_common.resources import Agent, Execution, WorkflowRun

from .cluster import Cluster, to_dict
from .metrics import WATCH_EVENTS, WATCH_RESTARTS
from .services.agents import AgentService
from .services.approvals import ApprovalService
from .services.runs import RunService
from .services.workflow_feed import WorkflowRunFeed
from .storage import Store, now_iso

log = logging.getLogger("agentry.api.watcher")
TRIAL_SWEEP_SECONDS = 60.0


class Watcher:
    def __init__(
        self,
        store: Store,
        cluster: Cluster,
        agents: AgentService,
        runs: RunService,
        approvals: ApprovalService,
        sync_every: float,
        approvals_every: float,
        workflow_runs: WorkflowRunFeed | None = None,
        sweep_trials: Callable[[], Awaitable[Any]] | None = None,
        sweeps: Sequence[tuple[str, float, Callable[[], Awaitable[Any]]]] = (),
    ) -> None:
        self.store, self.cluster = store, cluster
        self.agents, self.runs, self.approvals = agents, runs, approvals
        self.workflow_runs = workflow_runs
        self.sweep_trials = sweep_trials  # hidden Agents of chat trials whose socket went away
        self.sweeps = sweeps  # other periodic passes: (name, period in seconds, pass)
        self.sync_every, self.approvals_every = sync_every, approvals_every
        self.tasks: list[asyncio.Task[None]] = []
        self.healthy: dict[str, bool] = {"agents": False, "executions": False}
        self.last_error: dict[str, str] = {}

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._forever("agents", self._watch_agents), name="watch-agents"),
            asyncio.create_task(self._forever("executions", self._watch_executions), name="watch-executions"),
            asyncio.create_task(self._loop("sync", self.sync_every, self._sync_once, self.agents.kick)),
            *self._workflow_task(),
            *(
                [asyncio.create_task(self._loop("trials", TRIAL_SWEEP_SECONDS, self.sweep_trials))]
                if self.sweep_trials
                else []
            ),
            asyncio.create_task(self._loop("approvals", self.approvals_every, self.approvals.expire_due)),
            *(
                asyncio.create_task(self._loop(name, every, body), name=name)
                for name, every, body in self.sweeps
            ),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _forever(self, what: str, body: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.healthy[what] = False
                self.last_error[what] = f"{type(exc).__name__}: {exc}"
                WATCH_RESTARTS.labels(what).inc()
                log.warning("watch %s stopped (%s); restarting in %.1f s", what, exc, delay)
            if time.monotonic() - started > 60:
                delay = 0.5
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)

    async def _loop(
        self,
        what: str,
        every: float,
        body: Callable[[], Awaitable[Any]],
        kick: asyncio.Event | None = None,
    ) -> None:
        while True:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s pass failed: %s", what, exc)
            if kick is None:
                await asyncio.sleep(every)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(kick.wait(), every)
                kick.clear()

    async def _sync_once(self) -> None:
        await self.agents.retry_pending()

    async def _relist(self, res: Any) -> tuple[list[dict[str, Any]], str]:
        """Everything now, and the resourceVersion to watch from (set even for an empty list)."""
        listing = self.cluster.client.list(res, namespace=self.cluster.namespace)
        items = [to_dict(o) async for o in listing]
        return items, listing.resourceVersion

    async def _watch_agents(self) -> None:
        items, rv = await self._relist(Agent)
        for cr in items:
            await self.agents.observe("ADDED", cr)
        await self._reconcile_missing({cr["metadata"]["name"] for cr in items})
        self.healthy["agents"] = True
        async for event, obj in self.cluster.client.watch(
            Agent, namespace=self.cluster.namespace, resource_version=rv or None
        ):
            WATCH_EVENTS.labels("agents", event).inc()
            await self.agents.observe(event, to_dict(obj))

    async def _reconcile_missing(self, present: set[str]) -> None:
        async for doc in self.store.all_agents():
            if doc.get("id") in present or doc.get("deleted"):
                continue
            await self.agents.observe("DELETED", {"metadata": {"name": doc["id"]}})

    async def _watch_executions(self) -> None:
        items, rv = await self._relist(Execution)
        for cr in items:
            await self.runs.observe("ADDED", cr)
        await self._follow("executions", Execution, rv, self.runs.observe)

    async def _follow(
        self, what: str, res: Any, rv: str, observe: Callable[[str, dict[str, Any]], Awaitable[Any]]
    ) -> None:
        """Watch `res` from resourceVersion `rv`, each event to `observe`; one bad object is logged
        and skipped, never the end of the watch."""
        self.healthy[what] = True
        async for event, obj in self.cluster.client.watch(
            res, namespace=self.cluster.namespace, resource_version=rv or None
        ):
            WATCH_EVENTS.labels(what, event).inc()
            try:
                await observe(event, to_dict(obj))
            except Exception as exc:
                log.warning("%s: %s not handled: %s", what, to_dict(obj)["metadata"].get("name"), exc)

    def _workflow_task(self) -> list[asyncio.Task[None]]:
        if self.workflow_runs is None:
            return []
        self.healthy["workflowruns"] = False
        return [
            asyncio.create_task(self._forever("workflowruns", self._watch_workflow_runs), name="watch-wfr")
        ]

    async def _watch_workflow_runs(self) -> None:
        """Relist (clients refetch on reconnect, so the relist publishes nothing), then watch."""
        assert self.workflow_runs is not None
        _, rv = await self._relist(WorkflowRun)
        await self._follow("workflowruns", WorkflowRun, rv, self.workflow_runs.observe)

    def state(self) -> dict[str, Any]:
        return {"healthy": dict(self.healthy), "errors": dict(self.last_error), "at": now_iso()}
