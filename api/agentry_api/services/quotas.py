"""Per-user quotas (docs/api.md, "Quotas"): checked before anything is created, counted in Firestore.

Counting from the store makes a quota hold across replicas. The check and the write are not one
transaction, so concurrent requests of one user can each pass a check that only one of them should:
a user can exceed a count by at most the number of requests they have in flight at that moment
(bounded by the body limit, the stream quota and their connections). That is the tolerance; what the
quotas stop is the unbounded growth a stranger could cause. Event streams are the exception: their
slots are leases taken in a transaction on the user's document, exact across replicas.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from agentry_common.models import TERMINAL_PHASES, Phase

from ..auth import User
from ..settings import Limits, Settings
from ..storage import Store
from .errors import OverQuota

ACTIVE_PHASES = [p.value for p in Phase if p not in TERMINAL_PHASES]
RUN_RETRY_SECONDS = 30  # a finishing run frees a slot; try again in a while
STREAM_TTL_SECONDS = 60.0  # a stream's lease, renewed while it is open; a dead replica's lapses
GUEST_WINDOW = dt.timedelta(hours=1)


def utc_day_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def client_key(address: str) -> str:
    return hashlib.sha256(f"client:{address}".encode()).hexdigest()[:32]


class Quotas:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings

    def limits(self, user: User) -> Limits:
        return self.settings.limits_of(user.kind)

    async def agent_create(self, user: User, scheduled: bool) -> None:
        limits = self.limits(user)
        agents, with_schedule = await self.store.count_agents(user.id)
        if agents >= limits.agents:
            raise OverQuota(
                "agents", limits.agents, f"quota reached: at most {limits.agents} agents; delete one first"
            )
        if scheduled:
            self._schedules(limits, with_schedule)

    async def agent_update(self, user: User, agent: dict[str, object], scheduled: bool) -> None:
        """An edit that adds a schedule to an agent without one counts against `scheduled_agents`."""
        spec = agent.get("spec")
        had = isinstance(spec, dict) and bool(spec.get("schedule"))
        if scheduled and not had:
            _, with_schedule = await self.store.count_agents(user.id)
            self._schedules(self.limits(user), with_schedule)

    def _schedules(self, limits: Limits, with_schedule: int) -> None:
        if with_schedule >= limits.scheduled_agents:
            raise OverQuota(
                "scheduled_agents",
                limits.scheduled_agents,
                f"quota reached: at most {limits.scheduled_agents} agents with a schedule",
            )

    async def run_start(self, user: User) -> None:
        limits = self.limits(user)
        if await self.store.count_runs(user.id, ACTIVE_PHASES) >= limits.concurrent_runs:
            raise OverQuota(
                "concurrent_runs",
                limits.concurrent_runs,
                f"quota reached: at most {limits.concurrent_runs} runs at once; wait for one to finish",
                RUN_RETRY_SECONDS,
            )
        now = dt.datetime.now(dt.UTC)
        day = utc_day_start(now)
        if await self.store.count_runs_since(user.id, iso(day)) >= limits.runs_per_day:
            tomorrow = day + dt.timedelta(days=1)
            raise OverQuota(
                "runs_per_day",
                limits.runs_per_day,
                f"quota reached: at most {limits.runs_per_day} runs per day (UTC)",
                max(1, int((tomorrow - now).total_seconds()) + 1),
            )

    async def conversation_start(self, user: User) -> None:
        limits = self.limits(user)
        if await self.store.count_conversations(user.id) >= limits.chat_conversations:
            raise OverQuota(
                "chat_conversations",
                limits.chat_conversations,
                f"quota reached: at most {limits.chat_conversations} conversations",
            )

    async def token_create(self, user: User) -> None:
        limits = self.limits(user)
        if len(await self.store.list_tokens(user.id)) >= limits.tokens:
            raise OverQuota(
                "tokens", limits.tokens, f"quota reached: at most {limits.tokens} API tokens; revoke one"
            )

    async def stream_open(self, user: User, lease: str) -> None:
        limits = self.limits(user)
        if not await self.store.open_stream(user.id, lease, limits.streams, STREAM_TTL_SECONDS):
            raise OverQuota(
                "streams",
                limits.streams,
                f"quota reached: at most {limits.streams} open event streams; close one",
                int(STREAM_TTL_SECONDS),
            )

    async def guest_mint(self, address: str) -> str:
        """The client key to record on the new guest; 429 past `guest_mints_per_hour` from it."""
        key = client_key(address)
        allowed = self.settings.guest_mints_per_hour
        since = dt.datetime.now(dt.UTC) - GUEST_WINDOW
        if await self.store.count_guests_from(key, iso(since)) >= allowed:
            raise OverQuota(
                "guest_sessions",
                allowed,
                f"too many guest sessions from this client (at most {allowed} per hour); sign in instead",
                int(GUEST_WINDOW.total_seconds()),
            )
        return key
