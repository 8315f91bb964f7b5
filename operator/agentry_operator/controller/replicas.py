"""Operator replicas with leader election (AGENTRY_LEADER_ELECTION): every replica serves the webhooks,
the one holding the Lease reconciles (leader.py). Without it one replica runs both (main.py).

The webhooks run in a kopf operator of their own, on a thread of their own, from start to stop: the
API server may call any replica behind the Service. The main thread campaigns for the Lease and, once
it holds it, runs the reconciling kopf operator, which lists every object as after a restart (the
operator resumes from the objects' state; reconciles are idempotent). A replica that loses the Lease
stops reconciling and exits non-zero, so that its pod restarts as a candidate; a clean stop
(SIGTERM) releases the Lease, so that the successor starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from dataclasses import dataclass, field

import kopf

from agentry_common.resources import loaded_kinds, prime_decoders

from ..registries import RECONCILE, WEBHOOKS
from ..settings import Settings
from .client import new_client
from .leader import LeaderElector, Timing, own_identity

log = logging.getLogger("agentry.operator")

STOP_SECONDS = 30.0


@dataclass(frozen=True)
class Scope:
    clusterwide: bool
    namespaces: list[str] = field(default_factory=list)


def run_replicated(config: Settings, scope: Scope, liveness: str) -> int:
    """Run this replica until a signal (0) or a lost Lease (1)."""
    prime_decoders(loaded_kinds())  # both threads decode Jobs and Secrets (a review's dry run, a start)
    stop_webhooks = threading.Event()
    webhooks = threading.Thread(
        target=_serve_webhooks, args=(scope, liveness, stop_webhooks), name="webhooks", daemon=True
    )
    webhooks.start()
    try:
        return asyncio.run(_campaign_and_lead(config, scope))
    finally:
        stop_webhooks.set()
        webhooks.join(STOP_SECONDS)


def _serve_webhooks(scope: Scope, liveness: str, stop: threading.Event) -> None:
    # Not the main thread: kopf installs no signal handlers here; the main thread stops it.
    asyncio.run(
        kopf.operator(
            registry=WEBHOOKS,
            clusterwide=scope.clusterwide,
            namespaces=scope.namespaces,
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
    )


async def _until_signal() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()


async def _first(*aws: asyncio.Task[None]) -> set[asyncio.Task[None]]:
    done, _ = await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)
    return done


async def _campaign_and_lead(config: Settings, scope: Scope) -> int:
    client = new_client()
    elector = LeaderElector(
        client,
        config.lease_namespace,
        config.lease_name,
        own_identity(),
        Timing(lease_seconds=config.lease_seconds, renew_deadline_seconds=config.lease_seconds * 0.7),
    )
    try:
        signalled = asyncio.create_task(_until_signal())
        acquiring = asyncio.create_task(elector.acquire())
        if signalled in await _first(signalled, acquiring):
            acquiring.cancel()
            return 0
        signalled.cancel()
        return await _lead(elector, scope)
    finally:
        await client.close()


async def _lead(elector: LeaderElector, scope: Scope) -> int:
    stop = asyncio.Event()
    # kopf installs its own SIGTERM/SIGINT handlers on this loop: a signal stops it, and we follow.
    reconciling = asyncio.create_task(
        kopf.operator(
            registry=RECONCILE,
            clusterwide=scope.clusterwide,
            namespaces=scope.namespaces,
            standalone=True,
            stop_flag=stop,
        )
    )
    holding = asyncio.create_task(elector.hold())
    lost = holding in await _first(reconciling, holding)
    if lost:
        log.error("leadership lost, stopping (the pod restarts as a candidate): %s", holding.exception())
        stop.set()
    else:
        holding.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(reconciling, STOP_SECONDS)
    if lost:
        return 1
    await elector.release()
    return 0
