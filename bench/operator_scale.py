"""The operator at scale (issue 16, item 2), on a real control plane (etcd, kube-apiserver and
kube-controller-manager with its Job and CronJob controllers) with the real operator process:

    python -m bench.operator_scale [--executions 10000] [--agents 1000] [--rate 10] [--seconds 60]

1. **Held**: `--agents` scheduled Agents (CronJob backend, a schedule that fires at no time of the run)
   and `--executions` Executions created at once; seconds until every one has its Job and CronJob,
   and the operator's peak RSS while it takes on and holds them all.
2. **Latency**: Executions created at `--rate` per second for `--seconds`, with all of the above held;
   per Execution, from sending its create to a watch on Jobs seeing its Job: p50 / p99. The
   baseline: a bare client creating Jobs at the same rate, from sending to seen on the same watch.
3. **Restart**: the operator SIGKILLed, `--missed` Executions created while it is down, the operator
   started again: seconds until each has its Job (every object listed and resumed), no Execution
   with two Jobs among all of them, and the new process's peak RSS until 10 s after that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import CronJob, Job

from agentry_common import constants as c
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import Proc

from .__main__ import _create_all, _job, _namespace
from .operator_proc import Peak, plane_with_crds, record_rss, start_operator, wait_count
from .results import record
from .runs import execution_manifest

NEVER = "0 0 1 1 *"  # New Year's midnight: no CronJob fires during the run


class JobWatch:
    """When each Job of a namespace was first seen by a watch (monotonic seconds), on a thread."""

    def __init__(self, config: KubeConfig, ns: str) -> None:
        self.config, self.ns = config, ns
        self.seen: dict[str, float] = {}
        self.rewatched = 0  # watches started again after an error (a Job seen late counts late)
        self.ready = threading.Event()
        threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True).start()
        self.ready.wait(30)

    async def _watch(self) -> None:
        """Watch again whenever a watch ends with an error (a loaded API server can drop one; the
        first sighting of each Job stays). The control plane stopping ends it for good."""
        client = AsyncClient(self.config)
        self.ready.set()
        while True:
            with contextlib.suppress(Exception):
                await self._follow(client)
            self.rewatched += 1
            await asyncio.sleep(0.5)

    async def _follow(self, client: AsyncClient) -> None:
        async for _, job in client.watch(Job, namespace=self.ns):
            meta = job.metadata
            name = meta and ((meta.labels or {}).get(c.LABEL_EXECUTION) or meta.name)
            if name:
                self.seen.setdefault(name, time.monotonic())


def agent(ns: str, name: str, scheduled: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"instructions": "x", "model": {"name": "m"}}
    spec["historyLimits"] = {"succeeded": 100, "failed": 100}
    if scheduled:
        spec["schedule"] = {"cron": NEVER, "timeZone": "UTC"}
    return {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


async def paced(config: KubeConfig, manifests: list[dict[str, Any]], rate: float) -> dict[str, float]:
    """Create each manifest at `rate` per second; when each create was sent (monotonic)."""
    client = AsyncClient(config, field_manager="bench")
    done: dict[str, float] = {}

    async def one(m: dict[str, Any]) -> None:
        done[m["metadata"]["name"]] = time.monotonic()
        await client.create(from_dict(m))

    start = time.monotonic()
    tasks = []
    for i, m in enumerate(manifests):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(m)))
    await asyncio.gather(*tasks)
    await client.close()
    return done


def latencies(created: dict[str, float], watch: JobWatch, limit: float = 120) -> list[float]:
    deadline = time.monotonic() + limit
    while any(name not in watch.seen for name in created) and time.monotonic() < deadline:
        time.sleep(0.2)
    missing = [n for n in created if n not in watch.seen]
    if missing:
        raise SystemExit(f"{len(missing)} Jobs never seen, e.g. {missing[:3]}")
    return sorted(watch.seen[n] - t for n, t in created.items())


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


@dataclass
class Scale:
    plane: ControlPlane
    config: KubeConfig
    client: Client
    ns: str
    args: argparse.Namespace
    work: Path

    def start_operator(self) -> Proc:
        return start_operator(self.plane, self.work, self.ns)

    def execution_jobs(self) -> Counter[str | None]:
        jobs = self.client.list(Job, namespace=self.ns, chunk_size=1000)
        return Counter((j.metadata.labels or {}).get(c.LABEL_EXECUTION) if j.metadata else None for j in jobs)


def held(ctx: Scale) -> tuple[Proc, Peak]:
    """Phase 1: the Agents and Executions taken on at once; prints the figures."""
    args = ctx.args
    operator = ctx.start_operator()
    peak = Peak(operator.pid)
    agents = [agent(ctx.ns, f"sched-{i}", True) for i in range(args.agents)] + [agent(ctx.ns, "runs", False)]
    asyncio.run(_create_all(ctx.config, agents, args.concurrency))
    runs = [execution_manifest(ctx.ns, f"ex-{i}", "runs") for i in range(args.executions)]
    t0 = time.perf_counter()
    asyncio.run(_create_all(ctx.config, runs, args.concurrency))
    created = time.perf_counter() - t0
    jobs = created + wait_count(ctx.client, Job, ctx.ns, args.executions)
    wait_count(ctx.client, CronJob, ctx.ns, args.agents)
    print(
        f"held: {args.agents} CronJobs and {args.executions} Jobs; the Executions created in "
        f"{created:.1f} s, their Jobs all exist after {jobs:.1f} s; RSS peak {peak.peak / 2**20:.0f} MiB"
    )
    return operator, peak


def latency(ctx: Scale) -> None:
    """Phase 2: Execution created -> Job seen, at a steady rate, beside a bare client's Job."""
    args = ctx.args
    watch = JobWatch(ctx.config, ctx.ns)
    n = int(args.rate * args.seconds)
    floor = latencies(
        asyncio.run(paced(ctx.config, [_job(ctx.ns, 100_000 + i) for i in range(n)], args.rate)), watch
    )
    runs = [execution_manifest(ctx.ns, f"steady-{i}", "runs") for i in range(n)]
    ours = latencies(asyncio.run(paced(ctx.config, runs, args.rate)), watch)
    for p in (50, 99):
        value, base = pct(ours, p), pct(floor, p)
        print(
            f"created -> Job seen at {args.rate:g}/s, p{p}: {value * 1000:.0f} ms (bare {base * 1000:.0f} ms)"
        )
        record(
            "operator_scale",
            f"Execution created -> its Job seen, p{p}, {args.rate:g}/s for {args.seconds} s, "
            f"{args.executions} Executions and {args.agents} schedules held",
            f"{value * 1000:.0f} ms",
            baseline=f"bare client's Job seen {base * 1000:.0f} ms",
            ratio=f"{value / base:.2f}x" if base else "",
            goal="p99 <= 1 s" if p == 99 else "",
            met=value <= 1.0 if p == 99 else None,
        )
    mean = statistics.mean(ours) * 1000
    print(f"  (mean {mean:.0f} ms over {len(ours)} runs; watches restarted: {watch.rewatched})")


def restart(ctx: Scale, old: Proc) -> Proc:
    """Phase 3: SIGKILL, Executions created while down, start again: until each has its Job."""
    args = ctx.args
    old.stop(grace=0)
    missed = [execution_manifest(ctx.ns, f"missed-{i}", "runs") for i in range(args.missed)]
    asyncio.run(_create_all(ctx.config, missed, args.concurrency))
    total = sum(ctx.execution_jobs().values()) + args.missed
    t0 = time.perf_counter()
    operator = ctx.start_operator()
    healthy = time.perf_counter() - t0
    peak = Peak(operator.pid)  # from its health on: the imports are the same as before the kill
    wait_count(ctx.client, Job, ctx.ns, total)
    took = time.perf_counter() - t0
    cpu = psutil.Process(operator.pid).cpu_times()
    time.sleep(10)  # the listed running Executions' resync comes after the listing has settled
    doubled = [e for e, k in ctx.execution_jobs().items() if e and k > 1]
    objects = total + args.agents
    print(
        f"restart with {objects} objects: the {args.missed} missed Executions all have Jobs "
        f"{took:.1f} s after the start (healthy after {healthy:.1f} s); with two Jobs: {len(doubled)}; "
        f"operator CPU until then {cpu.user + cpu.system:.1f} s"
    )
    figure = f"operator peak RSS after the restart, holding {objects} objects"
    record_rss("operator_scale", figure, peak.stop())
    record(
        "operator_scale",
        f"restart holding {objects} objects: all {args.missed} Executions created while down have their Job",
        f"{took:.1f} s",
        goal="<= 60 s, no duplicate Job",
        met=took <= 60 and not doubled,
    )
    return operator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_scale")
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--missed", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    work, plane, config, client = plane_with_crds("agentry-scale-")
    try:
        ctx = Scale(plane, config, client, _namespace(client, "scale"), args, work)
        operator, peak = held(ctx)
        latency(ctx)
        figure = f"operator peak RSS holding {args.executions} Executions and {args.agents} schedules"
        record_rss("operator_scale", figure, peak.stop())
        restart(ctx, operator).stop()
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
