"""What the operator keeps for its lifetime, in kopf's `memo`: one typed object behind one accessor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import kopf
from lightkube import AsyncClient

from .backends import ScheduleBackend
from .controller.namespaces import Namespaces
from .handlers.agent_timers import AgentTimers
from .handlers.state import State
from .settings import Settings

MEMO_KEY = "agentry"


@dataclass
class OperatorContext:
    """Set up at start-up (main.configure), closed at cleanup."""

    config: Settings
    client: AsyncClient
    state: State
    scheduler: ScheduleBackend | None = None  # the Cloud Scheduler backend, when configured
    refresher: asyncio.Task[None] | None = None  # the one background loop (handlers/agent.py)
    releaser: asyncio.Task[None] | None = None  # free C heap given back (agentry_common/heap.py)
    sweeper: asyncio.Task[None] | None = None  # memory stores of Agents gone (handlers/memory.py)
    timers: AgentTimers | None = None  # Operator-backend schedules (reconciling side only)
    watches: list[asyncio.Task[None]] = field(default_factory=list)  # the runs' (controller/informer.py)
    namespaces: Namespaces | None = None  # with namespace patterns: the matching namespaces' watches


def store(memo: kopf.Memo, context: OperatorContext) -> None:
    memo[MEMO_KEY] = context


def find(memo: kopf.Memo) -> OperatorContext | None:
    """The context, or None before start-up has stored it."""
    found = memo.get(MEMO_KEY)
    return found if isinstance(found, OperatorContext) else None


def context(memo: kopf.Memo) -> OperatorContext:
    """The context of a handler; every handler runs after start-up."""
    found = find(memo)
    if found is None:
        raise RuntimeError("the operator's context is not set up (start-up has not run)")
    return found
