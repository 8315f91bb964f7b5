"""The loop the workflow handlers share: each object's reconciles serialised, and the object woken
again at the time its last reconcile asked for (a WorkflowRun's in handlers/workflow.py, a Workflow
schedule's tick in handlers/workflow_schedule.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Hashable

import kopf
from lightkube import AsyncClient

from agentry_common import constants as c

from ..burst import BURST
from ..context import context

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
Key = tuple[str, str]
log = logging.getLogger("agentry.operator.workflows")
RETRY_SECONDS = 10.0  # after a reconcile that raised


Act = Callable[[AsyncClient, Key, Logger], Awaitable[dt.datetime | None]]


class Runs:
    """Serialises each object's reconciles (`act`: a run's reconcile, or a schedule's tick) and wakes
    it at the time the last one asked for. One per operator, put in the operator-wide memo at
    start-up (kopf gives each object a shallow copy of it, so one made later in a handler's memo
    would not be shared)."""

    def __init__(self, act: Act, what: str = "workflow run", slack: float = 0.2, gated: bool = True) -> None:
        self.act, self.what, self.slack, self.gated = act, what, slack, gated
        self.locks: dict[Key, asyncio.Lock] = {}
        self.timers: dict[Key, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def poke(self, client: AsyncClient, key: Key, logger: Logger = log) -> None:
        if self.gated:  # a run's reconcile lets a burst of fires go first (burst.py)
            await BURST.settled()
        async with self.locks.setdefault(key, asyncio.Lock()):
            try:
                wake = await self.act(client, key, logger)
            except Exception as exc:  # the API server or a refused child: look again soon
                logger.warning("%s %s/%s: %s; retrying in %.0f s", self.what, *key, exc, RETRY_SECONDS)
                wake = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=RETRY_SECONDS)
        self._arm(client, key, wake)

    def _arm(self, client: AsyncClient, key: Key, wake: dt.datetime | None) -> None:
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        if wake is not None:
            # A little after the planned second (slack): the plan's times are whole seconds.
            delay = max((wake - dt.datetime.now(dt.UTC)).total_seconds(), 0.0) + self.slack
            self.timers[key] = asyncio.get_running_loop().call_later(delay, self._spawn, client, key)

    def _spawn(self, client: AsyncClient, key: Key) -> None:
        task = asyncio.create_task(self.poke(client, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, key: Key) -> None:
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.locks.pop(key, None)


def runs_in(memo: kopf.Memo, memo_key: str) -> Runs:
    found = memo.get(memo_key)
    if not isinstance(found, Runs):
        raise RuntimeError(f"{memo_key} is not set up (start-up has not run)")
    return found


def watch_objects(
    registry: kopf.OperatorRegistry,
    plural: str,
    memo_key: str,
    runs: Callable[[], Runs],
    signature: Callable[[kopf.Body], Hashable] | None = None,
) -> None:
    """One `Runs` for the objects of `plural` (made at start-up, kept in the operator-wide memo
    under `memo_key`); each watch event of one pokes it (with `signature`, only an event whose
    signature differs from the last poked one), its deletion forgets its timer."""
    seen: dict[Key, Hashable] = {}

    async def install(memo: kopf.Memo, **_: object) -> None:
        memo[memo_key] = runs()

    async def on_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: object) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if type == "DELETED":
            seen.pop(key, None)
            runs_in(memo, memo_key).forget(key)  # a run's step Executions go with it (owners)
            return
        if signature is not None:
            mark = signature(body)
            if type is not None and seen.get(key) == mark:  # None: the start-up listing, always
                return
            seen[key] = mark
        await runs_in(memo, memo_key).poke(context(memo).client, key, logger)

    kopf.on.startup(registry=registry, id=f"install-{plural}")(install)
    kopf.on.event(c.GROUP, c.VERSION, plural, registry=registry, id=f"poke-{plural}")(on_event)
