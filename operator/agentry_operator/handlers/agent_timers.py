"""Agent schedules on the Operator backend (spec.schedule.backend: Operator): the operator's timers.

One timer per such Agent, armed from the Agent's watch events (the start-up listing too) for its next
fire time plus its jitter. At that time the Execution of the time is created: one write, from what
the watch keeps (no read first), under the name of the time (tick.build_execution), so a time started
twice meets 409. The rest of a scheduled run is the CronJob backend's: the Execution handler applies
concurrencyPolicy and startingDeadlineSeconds, the Agent's refresh does catch-up windows, backfill,
pauseOnFailure and upcomingRuns.

Each timer keeps a cursor (the last time fired): a re-arm by a later event neither skips nor repeats
a time. A new, edited or resumed schedule starts from now, so an edit never fires a spurious run. A
timer armed after a restart starts RESTART_GRACE back (schedule.timer_cursor) and starts the newest
time missed in between, unless its Execution was pruned already (status.archived.names).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient
from prometheus_client import Counter, Histogram

from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import ScheduleBackend
from agentry_common.naming import scheduled_execution_name

from .. import kube
from ..builders.governance import owner_of
from ..builders.kinds import Schedule
from ..burst import BURST
from ..schedule import (
    cron_error,
    jitter_of,
    missed_since,
    next_run,
    timer_cursor,
    timer_signature,
    timezone_error,
)
from ..tick import build_execution
from .adoption import agent_owner
from .state import Key, State

log = logging.getLogger("agentry.operator.timers")
RETRY_SECONDS = 5.0  # a create that failed (the API server away) is tried again this soon
LOOK_AGAIN = 300.0  # a far timer wakes this often to re-read the wall clock (it may have been set)

FIRES = Counter(
    "agentry_schedule_fires_total",
    "Fire times of Operator-backend schedules, by result (created, exists, pruned, failed)",
    ["result"],
)
FIRE_DELAY = Histogram(
    "agentry_schedule_fire_delay_seconds",
    "From a fire time (plus jitter) to its Execution created, Operator-backend schedules",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


def timed_schedule(body: dict[str, Any]) -> Schedule | None:
    """The Agent's schedule if the operator's timers fire it: Operator backend, not suspended, not
    being deleted, a valid cron and zone, and not refused (Ready False, InvalidSpec, for this
    generation)."""
    schedule: Schedule | None = (body.get("spec") or {}).get("schedule")
    if not schedule or schedule.get("backend") != ScheduleBackend.OPERATOR.value or schedule.get("suspend"):
        return None
    if body["metadata"].get("deletionTimestamp"):  # going: no more runs
        return None
    if cron_error(str(schedule.get("cron") or "")) or timezone_error(str(schedule.get("timeZone") or "UTC")):
        return None
    generation = body["metadata"].get("generation")
    for cond in (body.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == ConditionType.READY
            and cond.get("status") == "False"
            and cond.get("reason") == Reason.INVALID_SPEC
            and cond.get("observedGeneration") == generation
        ):
            return None
    return schedule.copy()


def _jitter(key: Key, schedule: Schedule) -> dt.timedelta:
    """The Agent's fixed offset after each fire time (spec.schedule.jitterSeconds)."""
    return dt.timedelta(seconds=jitter_of(f"{key[0]}/{key[1]}", schedule))


@dataclass
class Armed:
    signature: str
    cursor: dt.datetime  # times after this one are still to fire
    at: dt.datetime | None = None  # the fire time armed (jitter not added)
    handle: asyncio.TimerHandle | None = None


class AgentTimers:
    """The timers of one operator (kept in its context; used by main.agent_event)."""

    def __init__(self, client: AsyncClient, state: State) -> None:
        self.client, self.state = client, state
        self.armed: dict[Key, Armed] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def seen(self, body: dict[str, Any]) -> None:
        """An Agent's watch event: arm, re-arm from now (a new or edited schedule), or disarm."""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        schedule = timed_schedule(body)
        if schedule is None:
            self.forget(key)
            return
        sig, old = timer_signature(schedule), self.armed.get(key)
        if old is not None and old.signature == sig:
            return  # armed for this very schedule: its cursor stands
        now = dt.datetime.now(dt.UTC)
        if old is None:  # not armed in this process: after a restart, the newest missed time too
            cursor = timer_cursor(schedule, body.get("status") or {}, now)
            missed = missed_since(schedule, cursor, now - _jitter(key, schedule))
        else:
            self.forget(key)
            cursor, missed = now, None
        self.armed[key] = Armed(sig, cursor)
        if missed is not None:
            self._spawn(key, missed)
        else:
            self._arm(key)

    def forget(self, key: Key) -> None:
        armed = self.armed.pop(key, None)
        if armed is not None and armed.handle is not None:
            armed.handle.cancel()

    def _arm(self, key: Key) -> None:
        """The timer for the first fire time after the cursor (plus the jitter)."""
        armed, schedule = self.armed.get(key), self._schedule(key)
        if armed is None or schedule is None:
            return
        if armed.handle is not None:
            armed.handle.cancel()
        armed.at = next_run(schedule["cron"], schedule.get("timeZone", "UTC"), armed.cursor)
        due = armed.at + _jitter(key, schedule)
        delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        if delay > LOOK_AGAIN:  # wake early and arm again: the delay is monotonic, the time is not
            armed.handle = loop.call_later(LOOK_AGAIN, self._arm, key)
        else:
            armed.handle = loop.call_later(max(delay, 0.0), self._spawn, key, armed.at)

    def _schedule(self, key: Key) -> Schedule | None:
        """The schedule as the watch last showed it, if still the armed one."""
        body, armed = self.state.agents.get(key), self.armed.get(key)
        schedule = timed_schedule(body) if body is not None else None
        if schedule is None or armed is None or timer_signature(schedule) != armed.signature:
            return None
        return schedule

    def _spawn(self, key: Key, when: dt.datetime) -> None:
        task = asyncio.create_task(self._fire(key, when))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _fire(self, key: Key, when: dt.datetime) -> None:
        """Create the Execution of `when`, then arm the next time (a failure: again soon)."""
        armed, schedule = self.armed.get(key), self._schedule(key)
        if armed is None or schedule is None:
            return
        result = await self._create(key, when)
        if armed is not self.armed.get(key):  # re-armed meanwhile (an edit): that timer goes on
            return
        if result == "failed":
            armed.handle = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._retry, key, when)
            return
        armed.cursor = max(armed.cursor, when)
        self._arm(key)

    def _retry(self, key: Key, when: dt.datetime) -> None:
        """Try `when` again while it is still the newest time due; else go on with the next one."""
        armed, schedule = self.armed.get(key), self._schedule(key)
        if armed is None or schedule is None:
            return
        if next_run(schedule["cron"], schedule.get("timeZone", "UTC"), when) <= dt.datetime.now(dt.UTC):
            log.warning("agent %s/%s: the run of %s was never created; going on", *key, when.isoformat())
            armed.cursor = max(armed.cursor, when)
            self._arm(key)
            return
        self._spawn(key, when)

    async def _create(self, key: Key, when: dt.datetime) -> str:
        body = self.state.agents.get(key) or {}
        archived = set(((body.get("status") or {}).get("archived") or {}).get("names") or [])
        if scheduled_execution_name(key[1], int(when.timestamp())) in archived:
            result = "pruned"  # it ran and went by historyLimits: never run it again
        else:
            result = await self._post(key, when)
        FIRES.labels(result).inc()
        return result

    def _manifest(self, key: Key, when: dt.datetime) -> dict[str, Any]:
        """The time's Execution, owned by the Agent as the watch shows it (no adoption write later)."""
        body = self.state.agents.get(key)
        owner = agent_owner(body) if body and body["metadata"].get("uid") else None
        return build_execution(key[1], key[0], when, owner, owner_of(body or {}))

    async def _post(self, key: Key, when: dt.datetime) -> str:
        try:
            async with BURST.firing():
                await kube.create(self.client, self._manifest(key, when))
        except ApiError as exc:
            if exc.status.code == 409:
                return "exists"
            log.warning("agent %s/%s: creating the run of %s: %s", *key, when.isoformat(), exc)
            return "failed"
        except Exception as exc:  # the API server unreachable
            log.warning("agent %s/%s: creating the run of %s: %s", *key, when.isoformat(), exc)
            return "failed"
        schedule = (self.state.agents.get(key) or {}).get("spec", {}).get("schedule") or Schedule()
        FIRE_DELAY.observe((dt.datetime.now(dt.UTC) - when - _jitter(key, schedule)).total_seconds())
        return "created"
