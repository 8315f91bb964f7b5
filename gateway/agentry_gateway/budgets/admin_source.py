"""Keeps the ledger's policies current with what admins set (I/O; the merge is `admin_docs`).

Every `interval` seconds (AGENTRY_GATEWAY_ADMIN_REFRESH_SECONDS, 5 s) each gateway pod reads the
admin policies and the active throttles from Firestore and swaps the merged list into its ledger: a
change applies within that interval (plus up to a lease's 2 s for calls a pod admits from a lease).
A poll rather than a listener: the async client has none, both collections are small, and a poll
needs no thread and recovers from an outage by itself. A failed read keeps the last good set. At
start the pod publishes the governance file's policies (`budgetAdmin/gatewayConfig`) so that the API
can show them, read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.governance import (
    BUDGET_ADMIN,
    BUDGET_POLICIES,
    BUDGET_THROTTLES,
    GATEWAY_CONFIG_DOC,
)

from .admin_docs import Merged, merge, published
from .policies import BudgetPolicy

log = logging.getLogger("agentry.gateway.budgets")


class PolicyHolder(Protocol):
    """What the refresh changes: the ledger's policies and how much rolling history it keeps."""

    policies: list[BudgetPolicy]
    keep_seconds: int


class AdminPolicies:
    def __init__(
        self,
        client: Any,  # google.cloud.firestore.AsyncClient
        config: Sequence[BudgetPolicy],
        holder: PolicyHolder,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.config = list(config)
        self.holder = holder
        self.interval = interval
        self.clock = clock
        self.refreshed_at: float | None = None
        self._reported: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def _read(self, collection: str, active_only: bool = False) -> list[tuple[str, dict[str, Any]]]:
        query: Any = self.client.collection(collection)
        if active_only:
            query = query.where(filter=FieldFilter("active", "==", True))
        return [(snap.id, snap.to_dict() or {}) async for snap in query.stream()]

    async def refresh(self) -> Merged:
        """Read, merge and swap in; skipped documents are logged once each (not every poll)."""
        merged = merge(
            self.config,
            await self._read(BUDGET_POLICIES),
            await self._read(BUDGET_THROTTLES, active_only=True),
            self.clock(),
        )
        for doc, why in merged.skipped:
            if (doc, why) not in self._reported:
                log.error("admin budget %s skipped: %s", doc, why)
        self._reported = set(merged.skipped)
        self.holder.policies = merged.policies
        # Counters prune rolling history older than this: never less than a policy needs.
        self.holder.keep_seconds = max(self.holder.keep_seconds, merged.keep_seconds)
        self.refreshed_at = self.clock()
        return merged

    async def publish(self) -> None:
        doc = {
            "policies": published(self.config),
            "publishedAt": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        await self.client.collection(BUDGET_ADMIN).document(GATEWAY_CONFIG_DOC).set(doc)

    async def run(self) -> None:
        try:
            await self.publish()
        except Exception as exc:
            log.warning("could not publish the governance file's policies: %s", type(exc).__name__)
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the last good set stays in force
                log.warning("admin budgets not refreshed (%s); the last good set applies", type(exc).__name__)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
