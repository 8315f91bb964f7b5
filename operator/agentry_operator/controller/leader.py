"""Leader election on a `coordination.k8s.io` Lease: one replica reconciles, every replica serves the
webhook (main.run_replicated).

The rules are client-go's: a candidate takes the Lease when it is free or its holder has not renewed
it within `leaseDurationSeconds`; the holder renews it every `renew_seconds`; a write only wins with
the resourceVersion it read (optimistic concurrency), so two candidates never both hold it. A holder
that cannot confirm a renewal within `renew_deadline_seconds` (shorter than the lease) stops acting
before anybody else may take over. A clean stop releases the Lease, so a successor starts at once.
Duplicate work is harmless anyway (reconciles are idempotent); the Lease keeps it rare and bounded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass

from lightkube import ApiError, AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger("agentry.operator.leader")


class LeadershipLost(RuntimeError):
    """The Lease could not be renewed in time, or another replica holds it."""


def own_identity() -> str:
    """The pod's name (downward API POD_NAME) or the host's, made unique per process."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Timing:
    lease_seconds: int = 10
    renew_seconds: float = 2.0
    renew_deadline_seconds: float = 7.0
    retry_seconds: float = 2.0


def may_take(spec: LeaseSpec | None, me: str, now: dt.datetime) -> bool:
    """Whether `me` may write itself as the holder: free, mine, or expired (pure)."""
    if spec is None or not spec.holderIdentity or spec.holderIdentity == me:
        return True
    renewed = spec.renewTime or spec.acquireTime
    if renewed is None:
        return True
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=dt.UTC)
    return now > renewed + dt.timedelta(seconds=spec.leaseDurationSeconds or 0)


def held_spec(previous: LeaseSpec | None, me: str, lease_seconds: int, now: dt.datetime) -> LeaseSpec:
    """The spec that records `me` as the holder, renewed now (pure)."""
    mine = previous is not None and previous.holderIdentity == me
    transitions = (previous.leaseTransitions or 0) if previous is not None else 0
    return LeaseSpec(
        holderIdentity=me,
        leaseDurationSeconds=lease_seconds,
        acquireTime=previous.acquireTime if mine and previous is not None else now,
        renewTime=now,
        leaseTransitions=transitions if mine else transitions + (previous is not None),
    )


class LeaderElector:
    def __init__(
        self, client: AsyncClient, namespace: str, name: str, identity: str, timing: Timing = Timing()
    ) -> None:
        self.client, self.namespace, self.name = client, namespace, name
        self.identity, self.timing = identity, timing

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease; False if another replica holds it or won."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return await self._write(None)
        if not may_take(lease.spec, self.identity, _now()):
            return False
        return await self._write(lease)

    async def _write(self, lease: Lease | None) -> bool:
        spec = held_spec(lease.spec if lease else None, self.identity, self.timing.lease_seconds, _now())
        try:
            if lease is None:
                meta = ObjectMeta(name=self.name, namespace=self.namespace)
                await self.client.create(Lease(metadata=meta, spec=spec))
            else:
                lease.spec = spec  # carries the resourceVersion read: a concurrent winner makes this 409
                await self.client.replace(lease)
        except ApiError as exc:
            if exc.status.code in (409, 422):
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        announced = False
        while True:
            try:
                if await self._try():
                    log.info("leader: %s holds lease %s/%s", self.identity, self.namespace, self.name)
                    return
            except Exception as exc:  # the API server may be away: keep trying
                log.warning("lease %s/%s not readable: %s", self.namespace, self.name, exc)
            if not announced:
                log.info("standby: another replica holds lease %s/%s", self.namespace, self.name)
                announced = True
            await asyncio.sleep(self.timing.retry_seconds)

    async def hold(self) -> None:
        """Renew until a renewal cannot be confirmed within the deadline; then raise LeadershipLost."""
        loop = asyncio.get_running_loop()
        confirmed = loop.time()
        while True:
            await asyncio.sleep(self.timing.renew_seconds)
            # As client-go: an attempt may use what is left of the deadline, so a slow API server (or
            # a busy loop) costs nothing until the deadline itself is at stake.
            started = loop.time()
            left = max(self.timing.renew_deadline_seconds - (started - confirmed), 0.5)
            try:
                renewed = await asyncio.wait_for(self._try(), left)
            except Exception as exc:  # every failure counts against the deadline
                log.warning("lease renewal failed: %s", exc)
                renewed = False
            now = loop.time()
            if renewed:
                # The renewTime written is about when the attempt started, not when its answer came:
                # the deadline counts from there, so this replica stops before the Lease can expire.
                confirmed = started
            elif now - confirmed > self.timing.renew_deadline_seconds:
                raise LeadershipLost(
                    f"lease {self.namespace}/{self.name} not renewed since {now - confirmed:.1f} s"
                )

    async def release(self) -> None:
        """Give the Lease up (a clean stop): the next candidate need not wait for it to expire."""
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is None or lease.spec.holderIdentity != self.identity:
                return
            lease.spec.holderIdentity = None
            lease.spec.leaseDurationSeconds = 1
            await self.client.replace(lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # best effort: it expires anyway
            log.warning("lease not released: %s", exc)
