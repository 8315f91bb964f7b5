"""Budget zones as notifications: the LLM gateway decides each call's zone (normal, throttle,
critical, exhausted: docs/governance.md) and writes it in the call's record (`llmCalls`); this reads
the records that arrived since its last look, and when a user's zone differs from the last one seen
(`notifyZones`), records a `budget.zone` event. The event's id comes from the call record that first
showed the new zone, so replicas reading the same records notify it once. Why records and not the
gateway: the gateway writes them already for every call, and the API then needs no new contract with
the gateway (a call's record is the zone's evidence; the notice follows it by at most one period).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agentry_common.notifications import EventKind

from ...storage import Store
from .outbox import Outbox

log = logging.getLogger("agentry.api.notifications")
Doc = dict[str, Any]
LOOK_BACK = 60.0  # a starting replica reads this far back (records written while no replica looked)
BATCH = 500


class ZoneWatch:
    def __init__(self, store: Store, outbox: Outbox, namespace: str) -> None:
        self.store, self.outbox, self.namespace = store, outbox, namespace
        self.since = time.time() - LOOK_BACK

    async def pass_once(self) -> int:
        """Read the new call records; notify each change of zone. Returns how many were notified."""
        records = await self.store.calls_since(self.namespace, self.since, BATCH)
        owners: dict[str, str | None] = {}
        zones: dict[str, str | None] = {}
        notified = 0
        for rec in records:
            self.since = max(self.since, float(rec.get("ts") or 0))
            zone = (rec.get("decision") or {}).get("zone")
            agent = str(rec.get("agent") or "")
            if not zone or not agent:
                continue
            if agent not in owners:
                doc = await self.store.agent(agent)
                owners[agent] = str(doc["userId"]) if doc and doc.get("userId") else None
            user = owners[agent]
            if user is None:
                continue
            if user not in zones:
                zones[user] = await self.store.last_zone(user)
            before = zones[user]
            if before == zone or (before is None and zone == "normal"):
                zones[user] = zone
                if before is None:
                    await self.store.set_zone(user, zone, float(rec["ts"]))
                continue
            await self.outbox.record(
                f"zone:{user}:{rec.get('id')}",
                EventKind.BUDGET_ZONE,
                user,
                f"Budget zone {before or 'normal'} → {zone}",
                agent=agent,
                execution=rec.get("execution") or None,
                phase=zone,
                reason=(rec.get("decision") or {}).get("action"),
                message=(rec.get("decision") or {}).get("reason"),
                link=self.outbox.link("/budgets"),
                data={"from": before or "normal", "to": zone},
            )
            await self.store.set_zone(user, zone, float(rec["ts"]))
            zones[user] = zone
            notified += 1
        return notified
