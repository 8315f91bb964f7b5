"""Which gateway pods are alive: each writes a heartbeat (`gatewayPods/<pod id>`), and reads the others'.

A reservation (a call in flight, or a lease) records the pod that made it. A pod killed mid-stream
never settles its reservations; without this they would stay reserved until their one-hour expiry.
With it, the first transaction of any pod that meets a reservation of a pod silent for `gone_after`
seconds counts it as spent at its estimate (budgets/counters.py `prune`): the provider may well have
charged the call, so the ledger never under-counts, and nothing stays held for an hour.

A pod cut off from Firestore but alive is indistinguishable from a dead one: its reservations are
counted then, and its settlements later add the actual usage too (over-counted, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from agentry_common.records import Collection

log = logging.getLogger("agentry.gateway.pods")

HEARTBEAT_SECONDS = 10.0
GONE_AFTER_SECONDS = 60.0  # many heartbeats: a slow write or clock skew never marks a live pod gone
FORGET_AFTER_SECONDS = 86400.0  # heartbeat documents of pods gone this long are deleted


def new_pod_id() -> str:
    return f"gw-{uuid.uuid4().hex[:16]}"


def gone_pods(seen: dict[str, float], now: float, gone_after: float, me: str) -> frozenset[str]:
    """The pods whose last heartbeat is older than `gone_after` (never this one)."""
    return frozenset(pod for pod, at in seen.items() if pod != me and now - at > gone_after)


class PodHeartbeat:
    def __init__(
        self,
        client: Any,
        pod: str,
        every: float = HEARTBEAT_SECONDS,
        gone_after: float = GONE_AFTER_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client, self.pod, self.every, self.gone_after, self.clock = client, pod, every, gone_after, clock
        self.started = clock()
        self.gone: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None

    async def ensure(self) -> None:
        """Beat once, then every `every` seconds (the first call only): a pod's reservations are
        never written before its first heartbeat, so a pod that dies early is seen gone too."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gateway-heartbeat")
        with contextlib.suppress(Exception):  # logged by the loop's own first beat
            await self.beat()

    async def stop(self) -> None:
        """Stop, and delete this pod's heartbeat: a pod that ends cleanly has settled what it held."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._ref(self.pod).delete()

    def _ref(self, pod: str) -> Any:
        return self.client.collection(Collection.GATEWAY_PODS).document(pod)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # Firestore unavailable: the next beat tries again
                log.warning("gateway heartbeat not written: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.every)

    async def beat(self) -> None:
        """Write this pod's heartbeat, then read every pod's: which are gone."""
        now = self.clock()
        await self._ref(self.pod).set({"seenAt": now, "startedAt": self.started})
        seen: dict[str, float] = {}
        async for snap in self.client.collection(Collection.GATEWAY_PODS).stream():
            at = (snap.to_dict() or {}).get("seenAt")
            if isinstance(at, int | float):
                seen[snap.id] = float(at)
                if now - float(at) > FORGET_AFTER_SECONDS:
                    await snap.reference.delete()
        gone = gone_pods(seen, now, self.gone_after, self.pod)
        if gone - self.gone:
            log.info("gateway pods gone (their reservations are counted now): %s", sorted(gone - self.gone))
        self.gone = gone
