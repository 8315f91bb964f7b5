"""In-memory state of one operator process: Executions by phase, and Agents whose status is stale.

Agent status (totals, last run, history pruning) is refreshed by one background task that coalesces
many Execution changes into one list call per Agent per interval: no per-object timers or daemons.
"""

from __future__ import annotations

import logging
from typing import Any

from agentry_common.models import Phase

from ..metrics import EXECUTIONS, PHASE_TRANSITIONS

Logger = logging.Logger | logging.LoggerAdapter[Any]


class State:
    def __init__(self) -> None:
        self.phases: dict[tuple[str, str], Phase] = {}
        self.dirty_agents: set[tuple[str, str]] = set()

    def phase_changed(
        self, namespace: str, name: str, before: Phase | None, after: Phase, agent: str
    ) -> None:
        key = (namespace, name)
        old = self.phases.get(key, before)
        if old == after and key in self.phases:
            return
        if key in self.phases and old is not None:
            EXECUTIONS.labels(old.value).dec()
        self.phases[key] = after
        EXECUTIONS.labels(after.value).inc()
        if old != after:
            PHASE_TRANSITIONS.labels(after.value).inc()
        self.dirty_agents.add((namespace, agent))

    def forget(self, namespace: str, name: str) -> None:
        old = self.phases.pop((namespace, name), None)
        if old is not None:
            EXECUTIONS.labels(old.value).dec()

    def take_dirty(self) -> set[tuple[str, str]]:
        dirty, self.dirty_agents = self.dirty_agents, set()
        return dirty
