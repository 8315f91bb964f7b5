"""The informer's store of one operator process, rebuilt from watch events after every (re)start.

It holds the last seen Agents and Executions (so handlers need no GET before acting) and indexes over
them (runs per Agent and per owner, runs waiting for an approval, for their Agent, for a slot of
their owner), the Executions whose Jobs are to be read again, and the Agents whose status is stale
(the background loop in handlers/agent.py works through these two). Retries and their back-off are
the controller's queue's (`queue`, controller/queue.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from agentry_common.models import Phase
from agentry_common.tracing import ANNOTATION_TRACEPARENT

from ..builders.governance import owner_of
from ..controller.queue import Queue
from ..governance import Governance
from ..metrics import EXECUTIONS, PHASE_TRANSITIONS
from .run_gate import RunGate

if TYPE_CHECKING:
    from ..pool.pools import Pools

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
Key = tuple[str, str]  # (namespace, name)


# Strings up to this long are shared between cached objects (`compact`); longer ones are rarely equal.
SHARED_MAX: Final = 64


def compact(value: Any) -> Any:
    """`value` with its dict keys and short strings shared (interned), for what the cache keeps.

    Each watch event is parsed on its own, so every cached object would hold its own copy of every
    key ("metadata", "lastTransitionTime", ...) and of every repeated value (phases, reasons, the
    Agent's name, timestamps of the same second), the largest part of the live heap with thousands
    of runs.
    """
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHARED_MAX else value
    if isinstance(value, Mapping):  # dicts, and kopf's read-only views of a body's parts
        return {sys.intern(k) if isinstance(k, str) else k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of an object the operator reads (keeps memory per object small; strings shared)."""
    meta = body.get("metadata") or {}
    keep = (
        "name",
        "namespace",
        "uid",
        "generation",
        "labels",
        "ownerReferences",
        "creationTimestamp",
        "resourceVersion",
        "deletionTimestamp",
    )
    slimmed = {k: compact(meta[k]) for k in keep if k in meta}
    # The one annotation the operator reads: the run's trace context (agentry_common.tracing).
    if traceparent := (meta.get("annotations") or {}).get(ANNOTATION_TRACEPARENT):
        slimmed["annotations"] = {ANNOTATION_TRACEPARENT: traceparent}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": slimmed,
        "spec": compact(body.get("spec") or {}),
        "status": compact(body.get("status") or {}),
    }


def phase_of(body: dict[str, Any]) -> Phase | None:
    value = (body.get("status") or {}).get("phase")
    return Phase(value) if value else None


def _ended(body: dict[str, Any]) -> bool:
    return (phase_of(body) or Phase.PENDING).terminal


class State:
    def __init__(self) -> None:
        self.agents: dict[Key, dict[str, Any]] = {}
        self.executions: dict[Key, dict[str, Any]] = {}
        # Indexes over `executions`, kept by seen_execution/wrote_status/forget: names per Agent, and
        # the Executions waiting for an approval (the background loop checks their expiry).
        self.by_agent: dict[Key, set[str]] = {}
        # Owner-labelled Executions per owner, and those waiting for a slot of their owner (the run
        # gate, run_gate.py): one of the owner's runs ending wakes them at once.
        self.by_owner: dict[str, set[Key]] = {}
        self.quota_waiting: dict[str, set[Key]] = {}
        self.gate = RunGate()
        self.waiting_approval: set[Key] = set()
        self.waiting_for_agent: dict[Key, float] = {}  # execution -> since (monotonic)
        # Running Executions whose Job and Pods are to be read again (listed after a restart, or a
        # retry): read together, a listing per namespace, by the background loop (outcome.resync_all).
        self.resync_at: dict[Key, float] = {}  # execution -> since (monotonic)
        self.dirty_agents: set[Key] = set()
        # Namespaces whose Executions have been listed whole (None: every namespace): an Agent's
        # totals and pruning read a partial listing as runs that do not exist (refresh_dirty).
        self.listed: set[str | None] = set()
        # Reads of Agents the watch has not shown yet: (when, the read), shared (execution._agent).
        self.agent_reads: dict[Key, tuple[float, asyncio.Future[dict[str, Any] | None]]] = {}
        self.last_start = 0.0  # monotonic time of the last run start (adoption waits for quiet)
        # The runs' work queue (controller/queue.py): reconciles, retries and their back-off.
        self.queue: Queue[Key] = Queue()
        # Governance (AGENTRY_GATEWAY_URL set): the gateway client, and per Execution the earliest
        # time admission may be asked again (the queue brings it back then) and the questions in flight.
        self.governance: Governance | None = None
        self.admission_after: dict[Key, float] = {}
        self.admitting: set[Key] = set()
        self.pools: Pools | None = None  # the warm pools (settings.pools set; pool/pools.py)

    # -- Executions ----------------------------------------------------------------------------

    def seen_execution(self, body: dict[str, Any]) -> dict[str, Any]:
        """Record an Execution from a watch event; returns the slim copy kept."""
        item = slim(body)
        key = (item["metadata"]["namespace"], item["metadata"]["name"])
        old = self.executions.get(key)
        if old is not None and _ended(old) and not _ended(item):
            # A late event from before the end we wrote (the watch lags our own writes): an end is
            # final, and acting on the older status would write over it.
            item["status"] = old["status"]
        self._count(old, item)
        self.executions[key] = item
        self.by_agent.setdefault((key[0], item["spec"]["agentRef"]["name"]), set()).add(key[1])
        if owner := owner_of(item):
            self.by_owner.setdefault(owner, set()).add(key)
        return item

    def wrote_status(self, key: Key, status: Mapping[str, object]) -> None:
        """Merge a status we just wrote into the cache (the watch event may come later)."""
        item = self.executions.get(key)
        if item is None:
            return
        new = {**item, "status": {**item["status"], **compact(status)}}
        self._count(item, new)
        self.executions[key] = new

    def forget(self, key: Key) -> None:
        item = self.executions.pop(key, None)
        if item is not None and phase_of(item) is not None:
            EXECUTIONS.labels(phase_of(item).value).dec()  # type: ignore[union-attr]
        if item is not None:
            names = self.by_agent.get((key[0], item["spec"]["agentRef"]["name"]), set())
            names.discard(key[1])
            if not names:
                self.by_agent.pop((key[0], item["spec"]["agentRef"]["name"]), None)
            self._free_slot(item)
            if (owner := owner_of(item)) and (keys := self.by_owner.get(owner)) is not None:
                keys.discard(key)
                if not keys:
                    del self.by_owner[owner]
        self.waiting_approval.discard(key)
        self.waiting_for_agent.pop(key, None)
        self.resync_at.pop(key, None)
        self.admission_after.pop(key, None)
        self.queue.forget(key)

    def _count(self, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        before, after = (phase_of(old) if old else None), phase_of(new)
        if before == after:
            return
        key = (new["metadata"]["namespace"], new["metadata"]["name"])
        if after == Phase.WAITING_APPROVAL:
            self.waiting_approval.add(key)
        else:
            self.waiting_approval.discard(key)
        if before is not None:
            EXECUTIONS.labels(before.value).dec()
        if after is not None:
            EXECUTIONS.labels(after.value).inc()
            PHASE_TRANSITIONS.labels(after.value).inc()
        ns = new["metadata"]["namespace"]
        self.dirty_agents.add((ns, new["spec"]["agentRef"]["name"]))
        if after is not None and after.terminal:
            self._free_slot(new)

    def _free_slot(self, item: Mapping[str, object]) -> None:
        """A run of an owner ended (or went): the owner's runs waiting for a slot try again now."""
        for key in self.quota_waiting.pop(owner_of(item), ()):
            self.queue.add(key, again=True)
        meta, spec = item.get("metadata"), item.get("spec")
        if isinstance(meta, Mapping) and isinstance(spec, Mapping):  # runs waiting for a kept workspace
            for key in self.gate.workspaces.wake((meta["namespace"], spec["agentRef"]["name"])):
                self.queue.add(key, again=True)

    def executions_of(self, namespace: str, agent: str) -> list[dict[str, Any]]:
        names = self.by_agent.get((namespace, agent), ())
        return [self.executions[(namespace, n)] for n in sorted(names) if (namespace, n) in self.executions]

    # -- Agents --------------------------------------------------------------------------------

    def seen_agent(self, body: dict[str, Any]) -> list[Key]:
        """Record an Agent; returns Executions that were waiting for it."""
        item = slim(body)
        key = (item["metadata"]["namespace"], item["metadata"]["name"])
        self.agents[key] = item
        self.agent_reads.pop(key, None)
        return [
            k
            for k in self.waiting_for_agent
            if k[0] == key[0]
            and self.executions.get(k, {}).get("spec", {}).get("agentRef", {}).get("name") == key[1]
        ]

    # -- Deferred work -------------------------------------------------------------------------

    def resync_later(self, key: Key) -> None:
        self.resync_at.setdefault(key, time.monotonic())

    def take_resyncs(self, quiet: float, oldest: float) -> list[Key]:
        """Every Execution waiting for a resync, once none was added for `quiet` seconds (a restart's
        listing has settled) or one has waited `oldest` seconds; else none yet."""
        if not self.resync_at:
            return []
        now = time.monotonic()
        times = self.resync_at.values()
        if now - max(times) < quiet and now - min(times) < oldest:
            return []
        keys, self.resync_at = sorted(self.resync_at), {}
        return keys

    def take_dirty(self) -> set[Key]:
        """The Agents to refresh now: those whose namespace's Executions are listed whole (the
        others stay dirty)."""
        ready = {key for key in self.dirty_agents if None in self.listed or key[0] in self.listed}
        self.dirty_agents -= ready
        return ready
