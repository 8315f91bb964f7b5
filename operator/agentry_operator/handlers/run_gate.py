"""The run gate: who owns a run, who may start it, and its owner's quotas, decided before any Job.

Every run start passes here (handlers/execution.start), whichever path created its Execution; the
rules are pure, in builders/run_gate.py. This module keeps the counts:

* **Runs at once** are counted from the operator's cache of Executions. Only the Lease's holder starts
  runs, and before its first start of an owned run it lists every owner-labelled Execution (its watch's
  own listing may still be under way), so the cache holds every run that holds a slot. A run holds a
  slot from its admission until it ends: admitted means its uid is in its owner's book of the day, or
  it has a Job. The check and the taking of the slot happen with no await between them, so runs
  starting concurrently never both take the last slot.
* **Runs per day** are each owner's book of the UTC day: a ConfigMap `agentry-runs-<hash>` in the
  operator's own namespace (tenants cannot write there), written before the Job with the API server's
  optimistic lock. It survives restarts, history pruning and a new leader, and a run admitted before a
  crash is known by its uid and never counted twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from lightkube import ApiError, AsyncClient
from lightkube.core.resource import NamespacedResource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import exists

from agentry_common import constants as c
from agentry_common.models import Phase
from agentry_common.naming import short_hash
from agentry_common.policy import AgentPolicy, load_policy

from .. import kube
from ..builders.run_gate import (
    Held,
    limits_of,
    policy_errors,
    policy_held,
    quota_held,
    run_owner,
    utc_day,
)
from ..controller.namespaces import has_patterns, selected
from ..settings import Settings


class State(Protocol):
    """What the gate reads and keeps in the operator's state (handlers/state.State)."""

    executions: dict[tuple[str, str], dict[str, Any]]
    by_owner: dict[str, set[tuple[str, str]]]
    quota_waiting: dict[str, set[tuple[str, str]]]

    def seen_execution(self, body: dict[str, Any]) -> dict[str, Any]: ...


BOOK_PREFIX = "agentry-runs-"
CHECKED_MAX = 4096  # policy answers kept (Agents x versions x priorities)
SAVE_TRIES = 5  # a book written by someone else meanwhile (409): read again, merge, write again


def book_name(owner: str) -> str:
    return BOOK_PREFIX + short_hash(owner, 16)


@dataclass
class Book:
    """One owner's runs admitted on one UTC day (uids), as its ConfigMap holds them."""

    day: str
    admitted: set[str] = field(default_factory=set)
    version: str | None = None  # the ConfigMap's resourceVersion; None: it does not exist yet
    loaded: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def merge(self, data: dict[str, str] | None) -> None:
        if data and data.get("day") == self.day:
            self.admitted |= set((data.get("admitted") or "").split())


@dataclass
class Workspaces:
    """Kept workspaces (handlers/workspace.py), per Agent: the run the gate let start last (it uses the
    workspace until its Job is recorded and then by that), and the runs waiting for it."""

    taken: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    waiting: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)

    def wake(self, agent: tuple[str, str]) -> set[tuple[str, str]]:
        """The runs waiting for the Agent's workspace (a run of it ended or went): they look again."""
        return self.waiting.pop(agent, set())


class RunGate:
    """The counts of one operator process (rebuilt from the cluster after a restart)."""

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.workspaces = Workspaces()
        self._seeded: asyncio.Future[None] | None = None
        self.policy: AgentPolicy | None = None  # the webhook's (main.configure), else read here once
        # Per Agent version and run priority: parsing the Agent once per version, not once per run.
        self._checked: dict[tuple[str, str, str | None, int | None], list[str]] = {}

    def policy_held(self, config: Settings, body: dict[str, Any], agent: dict[str, Any]) -> Held | None:
        """The Agent policy (AGENTRY_POLICY_FILE, read once, as the webhook reads it) for this run."""
        if self.policy is None:
            self.policy = load_policy(config.policy_file)
        meta = agent["metadata"]
        key = (meta["namespace"], meta["name"], meta.get("resourceVersion"), body["spec"].get("priority"))
        errors = self._checked.get(key)
        if errors is None:
            if len(self._checked) >= CHECKED_MAX:
                self._checked.clear()
            errors = self._checked[key] = policy_errors(body, agent, self.policy, config.governed)
        return policy_held(errors)

    async def admit(
        self,
        client: AsyncClient,
        config: Settings,
        state: State,
        body: dict[str, Any],
        agent: dict[str, Any],
    ) -> Held | None:
        """None when the run may start now (its slot is taken); else why not. Ownership is checked
        before (builders/run_gate.owner_held)."""
        owner = run_owner(body, agent)
        if not owner:
            return None  # no owner: the namespace's ResourceQuota bounds such runs
        now = dt.datetime.now(dt.UTC)
        await self._seed(client, config, state)
        book = await self._book(client, config, owner, utc_day(now))
        uid = str(body["metadata"]["uid"])
        if uid in book.admitted or (body.get("status") or {}).get("jobName"):
            return None  # admitted before (a retry, or a start interrupted by a crash)
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        active = self.active(state, owner, key, book)
        held = quota_held(active, len(book.admitted), limits_of(agent, config), now)
        if held is not None:
            if held.phase == Phase.PENDING:
                state.quota_waiting.setdefault(owner, set()).add(key)
            return held
        book.admitted.add(uid)  # the slot is taken here, before any await
        try:
            await self._save(client, config, owner, book)
        except BaseException:
            book.admitted.discard(uid)
            raise
        return None

    def active(self, state: State, owner: str, key: tuple[str, str], book: Book) -> int:
        """The owner's runs holding a slot, `key` excluded."""
        count = 0
        for other in state.by_owner.get(owner, ()):
            item = state.executions.get(other)
            if other == key or item is None:
                continue
            phase = (item.get("status") or {}).get("phase")
            if phase and Phase(phase).terminal:
                continue
            if (item.get("status") or {}).get("jobName") or item["metadata"].get("uid") in book.admitted:
                count += 1
        return count

    async def _seed(self, client: AsyncClient, config: Settings, state: State) -> None:
        """Once per process: every owner-labelled Execution in the cache before the first count."""
        if self._seeded is None:
            self._seeded = asyncio.ensure_future(_list_owned(client, config, state))
        try:
            await asyncio.shield(self._seeded)
        except Exception:
            self._seeded = None  # the next start lists again
            raise

    async def _book(self, client: AsyncClient, config: Settings, owner: str, today: str) -> Book:
        book = self.books.setdefault(owner, Book(today))
        if not book.loaded:
            async with book.lock:
                if not book.loaded:
                    found = await kube.get_or_none(
                        client, kube.ConfigMap, book_name(owner), config.state_namespace
                    )
                    _read(book, found)
                    book.loaded = True
        if book.day != today:
            book.day, book.admitted = today, set()
        return book

    async def _save(self, client: AsyncClient, config: Settings, owner: str, book: Book) -> None:
        name, namespace = book_name(owner), config.state_namespace
        async with book.lock:
            for _ in range(SAVE_TRIES):
                data = {"owner": owner, "day": book.day, "admitted": " ".join(sorted(book.admitted))}
                try:
                    book.version = await _write(client, name, namespace, data, book.version)
                    return
                except ApiError as exc:
                    if exc.status.code != 409:
                        raise
                _read(book, await kube.get_or_none(client, kube.ConfigMap, name, namespace))
            raise RuntimeError(f"ConfigMap {namespace}/{name} kept changing under the operator; try again")


def _read(book: Book, found: dict[str, Any] | None) -> None:
    book.version = None if found is None else found["metadata"].get("resourceVersion")
    book.merge(None if found is None else found.get("data"))


async def _write(
    client: AsyncClient, name: str, namespace: str, data: dict[str, str], version: str | None
) -> str | None:
    """Create the book, or replace its data if it is still at `version`; its new resourceVersion."""
    if version is None:
        labels = {c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_COMPONENT: "run-gate"}
        meta = ObjectMeta(name=name, namespace=namespace, labels=labels)
        made = await client.create(kube.ConfigMap(metadata=meta, data=data))
    else:
        body = {"metadata": {"resourceVersion": version}, "data": data}
        made = await client.patch(
            kube.ConfigMap, name, body, namespace=namespace, patch_type=kube.PatchType.MERGE
        )
    return made.metadata.resourceVersion if made.metadata else None


async def _list_owned(client: AsyncClient, config: Settings, state: State) -> None:
    """Every Execution carrying an owner label into the cache (those it has already are newer)."""
    patterns = not config.watch_namespaces or has_patterns(config.watch_namespaces)
    scopes = ["*"] if patterns else config.watch_namespaces
    res: type[NamespacedResource] = kube.Execution
    for scope in scopes:
        async for item in client.list(res, namespace=scope, labels={c.LABEL_OWNER: exists()}):
            body = kube.to_dict(item)
            meta = body["metadata"]
            if (
                patterns
                and config.watch_namespaces
                and not selected(meta["namespace"], config.watch_namespaces)
            ):
                continue  # a namespace the patterns leave out: not watched
            if (meta["namespace"], meta["name"]) not in state.executions:
                state.seen_execution(body)
