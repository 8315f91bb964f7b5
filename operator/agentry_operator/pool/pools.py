"""The pools: each pool's warm pods (from the pod watch), and a loop that keeps each pool at its size.

A pool is kept at `max` warm Jobs while runs ask for it (a claim, or a run that found it empty, in the
last `idleSeconds`; the operator's start counts as asking), else at `min` (0: scaled to zero). Warm Jobs
that ended unclaimed (a pod killed, the warm deadline) are deleted and replaced. Runs only on the
replica that reconciles the runs (run_events.py), beside the runs' watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from lightkube import ApiError, AsyncClient, operators

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_common.pool import PoolProfile

from .. import kube
from ..builders.execution_status import POD_RUNNING, terminal_job
from ..handlers.outcome import JOB_LABEL, JOBS
from ..metrics import POOL_READY
from ..settings import Settings
from .builders import (
    Doc,
    Profile,
    claim_secret,
    claimed_by,
    node,
    profile_of,
    secret_values,
    strings,
    warm_job,
)

log = logging.getLogger("agentry.operator")

TICK_SECONDS = 5.0  # the loop looks at every pool this often, and at once when poked
PoolKey = tuple[str, str]  # (namespace, pool)


@dataclass(frozen=True)
class Warm:
    """A warm pod ready for a claim."""

    job: str
    pod: str
    ip: str


@dataclass
class Pools:
    config: Settings
    client: AsyncClient
    profiles: dict[str, PoolProfile] = field(default_factory=dict)
    shapes: dict[str, Profile] = field(default_factory=dict)  # pool -> the run profile it serves
    ready: dict[PoolKey, dict[str, Warm]] = field(default_factory=dict)  # job -> warm pod, oldest first
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (namespace, job) -> claim key
    asked: dict[PoolKey, float] = field(default_factory=dict)  # monotonic time a run last asked
    claiming: set[tuple[str, str]] = field(default_factory=set)  # (namespace, job) being claimed
    poked: asyncio.Event = field(default_factory=asyncio.Event)
    _http: httpx.AsyncClient | None = None  # the claims' (made once: a client costs its TLS set-up)

    @classmethod
    def from_config(cls, config: Settings, client: AsyncClient) -> Pools | None:
        if not config.pools:
            return None
        pools = cls(config, client)
        now = time.monotonic()
        for profile in config.pools:
            sample = warm_job(profile, profile.namespaces[0], config, "sample")
            pools.profiles[profile.name] = profile
            pools.shapes[profile.name] = profile_of(sample)
            for ns in profile.namespaces:
                pools.asked[(ns, profile.name)] = now  # a start counts as asking: the pools fill
        return pools

    def http(self) -> httpx.AsyncClient:
        """The client claims are delivered with (plain HTTP to pod addresses, no proxies)."""
        if self._http is None:
            self._http = httpx.AsyncClient(trust_env=False)
        return self._http

    def pool_for(self, namespace: str, shape: Profile) -> str | None:
        for name, served in self.shapes.items():
            if served == shape and namespace in self.profiles[name].namespaces:
                return name
        return None

    def ask(self, namespace: str, pool: str) -> None:
        """A run asked for this pool: it is kept at its max (refilled once the claim is done: `refill`)."""
        self.asked[(namespace, pool)] = time.monotonic()

    def refill(self) -> None:
        """Size the pools now (after a claim: its API calls do not queue behind the refill's)."""
        self.poked.set()

    def take(self, namespace: str, pool: str) -> Warm | None:
        """The oldest ready warm pod of the pool, no longer offered to another claim."""
        ready = self.ready.get((namespace, pool)) or {}
        if not ready:
            return None
        job = next(iter(ready))
        warm = ready.pop(job)
        self.claiming.add((namespace, job))
        self._report((namespace, pool))
        return warm

    def give_back(self, namespace: str, pool: str, warm: Warm) -> None:
        """A warm pod taken for a claim that was not made (another claim of the run came first)."""
        self.ready.setdefault((namespace, pool), {})[warm.job] = warm
        self._report((namespace, pool))

    def done(self, namespace: str, job: str) -> None:
        self.claiming.discard((namespace, job))

    def on_pod(self, event: str | None, pod: Mapping[str, object]) -> None:
        """A pod event: a pool's pod that runs, unclaimed, with an address is ready; any other not."""
        meta = node(pod, "metadata")
        labels = strings(meta, "labels")
        name = labels.get(p.LABEL_POOL)
        if name is None:
            return
        ns, job = str(meta.get("namespace")), labels.get(JOB_LABEL, "")
        status = pod.get("status")
        running = isinstance(status, Mapping) and status.get("phase") == POD_RUNNING and status.get("podIP")
        claimed = bool(strings(meta, "annotations").get(c.ANNOTATION_EXECUTION))
        ready = self.ready.setdefault((ns, name), {})
        if event == "DELETED" or not running or claimed or meta.get("deletionTimestamp"):
            ready.pop(job, None)
        elif job not in ready and (ns, job) not in self.claiming and isinstance(status, Mapping):
            ready[job] = Warm(job, str(meta["name"]), str(status["podIP"]))
        self._report((ns, name))

    def _report(self, key: PoolKey) -> None:
        POOL_READY.labels(namespace=key[0], pool=key[1]).set(len(self.ready.get(key) or {}))

    async def key_of(self, namespace: str, job: str) -> str:
        """The warm pod's claim key: kept since its creation, else read from its Secret (a restart)."""
        key = self.keys.get((namespace, job))
        if key is None:
            secret = await kube.get_or_none(self.client, kube.Secret, p.claim_secret_name(job), namespace)
            key = secret_values(secret or {}).get(p.KEY_FILE, "")
            if not key:
                raise LookupError(f"warm Job {job} has no claim key")
            self.keys[(namespace, job)] = key
        return key

    def target(self, namespace: str, profile: PoolProfile) -> int:
        since = time.monotonic() - self.asked.get((namespace, profile.name), float("-inf"))
        return profile.max if since < profile.idle_seconds else profile.min

    async def run(self) -> None:
        """Size every pool, every TICK_SECONDS and whenever poked; never ends (a failure is logged)."""
        namespaces = sorted({ns for profile in self.profiles.values() for ns in profile.namespaces})
        while True:
            self.poked.clear()
            for ns in namespaces:
                try:
                    await self.size(ns)
                except Exception as exc:  # an API server hiccup: the next round tries again
                    log.warning("sizing the pools in %s failed: %s", ns, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poked.wait(), TICK_SECONDS)

    async def size(self, namespace: str) -> None:
        """The pools of one namespace at their targets. Unclaimed warm Jobs that ended (a pod killed,
        the warm deadline) or whose pool is no longer configured are deleted."""
        warm: dict[str, list[Doc]] = {}
        async for found in self.client.list(
            JOBS, namespace=namespace, labels={p.LABEL_POOL: operators.exists()}
        ):
            job = kube.to_dict(found)
            name, pool = _name(job), strings(job, "metadata", "labels").get(p.LABEL_POOL, "")
            if (
                claimed_by(job)
                or (namespace, name) in self.claiming
                or node(job, "metadata").get("deletionTimestamp")
            ):
                continue
            profile = self.profiles.get(pool)
            if terminal_job(job) or profile is None or namespace not in profile.namespaces:
                await self._delete(namespace, name)
            else:
                await self._ensure_key(namespace, job)
                warm.setdefault(pool, []).append(job)
        for profile in self.profiles.values():
            if namespace in profile.namespaces:
                await self._resize(namespace, profile, warm.get(profile.name, []))

    async def _resize(self, namespace: str, profile: PoolProfile, warm: list[Doc]) -> None:
        missing = self.target(namespace, profile) - len(warm)
        for _ in range(missing):
            await self._create(namespace, profile)
        if missing < 0:  # idle: the newest go first, those not ready yet before the ready ones
            ready = self.ready.get((namespace, profile.name)) or {}
            newest = sorted(warm, key=_created, reverse=True)
            for extra in sorted(newest, key=lambda j: _name(j) in ready)[:-missing]:
                await self._delete(namespace, _name(extra))

    async def _create(self, namespace: str, profile: PoolProfile) -> None:
        name = f"pool-{profile.name}-{secrets.token_hex(3)}"
        key = p.new_key()
        created = kube.to_dict(
            await self.client.create(JOBS.from_dict(warm_job(profile, namespace, self.config, name)))
        )
        # After the Job, owned by it: the pod waits for its volume the few milliseconds until it exists
        # (if this create fails, the next round makes it: _ensure_key).
        await kube.create(self.client, claim_secret(created, key))
        self.keys[(namespace, name)] = key

    async def _ensure_key(self, namespace: str, job: Doc) -> None:
        """A warm Job's claim Secret exists (known since its creation, else read once, else made: its
        creation failed, or a restart found it gone; nothing has used that pod's key yet)."""
        name = _name(job)
        if (namespace, name) in self.keys:
            return
        secret = await kube.get_or_none(self.client, kube.Secret, p.claim_secret_name(name), namespace)
        key = secret_values(secret or {}).get(p.KEY_FILE, "")
        if not key:
            key = p.new_key()
            await kube.create(self.client, claim_secret(job, key))
        self.keys[(namespace, name)] = key

    async def _delete(self, namespace: str, job: str) -> None:
        for key, ready in self.ready.items():
            if key[0] == namespace and ready.pop(job, None) is not None:
                self._report(key)
        self.keys.pop((namespace, job), None)
        try:
            await kube.delete_quietly(self.client, kube.Job, job, namespace)
        except ApiError as exc:
            log.warning("deleting warm Job %s/%s failed: %s", namespace, job, exc.status.message)

    def warm_count(self) -> dict[PoolKey, int]:
        return {key: len(ready) for key, ready in self.ready.items()}


def _name(job: Doc) -> str:
    return str(node(job, "metadata")["name"])


def _created(job: Doc) -> str:
    return str(node(job, "metadata").get("creationTimestamp") or dt.datetime.now(dt.UTC).isoformat())
