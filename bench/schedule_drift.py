"""Firing drift of schedules under load (issue 15: p99 <= 1 s after the fire time, 1,000 schedules).

    python -m bench.schedule_drift [--schedules 1000] [--namespaces 4] [--fires 3] [--concurrency 64]
                                   [--phases workflows agents]

On a real local control plane (kube-apiserver, etcd, the real CronJob and Job controllers) with the
operator process, N schedules firing every minute, in a few namespaces, for `--fires` fire times:

1. Agents with `spec.schedule` on their default backend, CronJob (Cloud Scheduler is Google's
   service): CronJob -> Job -> tick pod -> Execution. The tick pods run on a stand-in node
   (bench/schedule_watch.py), so container start is left out: a lower bound of this backend's drift.
2. Agents on the Operator backend: the operator's in-memory timers create the Executions.
3. Workflows with `spec.schedule`: the operator's own in-memory timers create the WorkflowRuns.

Drift of a fire = when a watcher process received the object's ADDED event minus the fire time the
scheduler wrote in `spec.scheduledTime` (creationTimestamp has 1 s resolution). Every due fire must
be seen once: a missed or doubled one fails the run. The operator's CPU seconds and peak RSS (and the
controller-manager's CPU) are taken over each measurement.

Baseline, same run, same watcher: a plain client creating N Executions itself at each fire time
(namespaces no operator watches, before any starts): the floor any scheduler on this machine meets.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import CronJob
from lightkube.resources.core_v1 import ServiceAccount

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_localcluster import localhttp
from agentry_localcluster.kube import REPO, ControlPlane
from agentry_localcluster.procs import Proc, start_with_ports
from agentry_operator import tick
from agentry_operator.kube import Agent, Execution, to_dict
from agentry_operator.settings import Settings
from agentry_operator.workflows.resources import Workflow

from .__main__ import _namespace
from .results import record
from .schedule_watch import Fires, clock, node_main, pod_drifts, read_lines, settle, until, watch_main
from .servers import PeakRSS
from .streams import percentile

GOAL_P99 = 1.0  # seconds after the fire time (issue 15)
EVERY_MINUTE = "* * * * *"
Keys = list[tuple[str, str]]  # (namespace, name) of each schedule's owner
# What is measured (in this order: the Agents' CronJobs would go on firing after their phase), as
# (what, the kind the watcher sees); each name is also the Bench method that prepares the schedules.
PHASES = {
    "workflows": ("Workflow schedules (operator timers)", "WorkflowRun"),
    "timers": ("Agent schedules (Operator backend)", "Execution"),
    "agents": ("Agent schedules (CronJob backend, pod start excluded)", "Execution"),
}


# --- The baseline: a plain client creating the Executions at the fire times itself ------------------


async def floor_rounds(
    config: KubeConfig, keys: Keys, times: list[float], offset: float, concurrency: int
) -> None:
    """At each time, one Execution per key (the tick's manifest), `concurrency` writes at once."""
    client = AsyncClient(config, field_manager="bench-floor")
    sem = asyncio.Semaphore(concurrency)

    async def one(obj: Any) -> None:
        async with sem:
            await client.create(obj)

    for when in times:
        stamp = dt.datetime.fromtimestamp(when, dt.UTC)
        objs = [Execution.from_dict(tick.build_execution(name, ns, stamp)) for ns, name in keys]
        await until(offset, when)  # the manifests are ready: the floor's work is the writes
        await asyncio.gather(*(one(o) for o in objs))
    await client.close()


# --- The operator and the schedules' owners ------------------------------------------------------------


def start_operator(plane: ControlPlane, work: Path, namespaces: list[str]) -> Proc:
    """The operator process watching `namespaces` (as bench/__main__.py starts it)."""
    env = {
        "KUBECONFIG": str(plane.kubeconfig),
        "AGENTRY_METRICS_PORT": "0",
        "AGENTRY_WEBHOOK_ENABLED": "false",
    }

    def on(ports: tuple[int, ...]) -> Proc:
        (health,) = ports
        argv = [sys.executable, "-m", "agentry_operator.main", *(f"--namespace={ns}" for ns in namespaces)]
        argv.append(f"--liveness=http://127.0.0.1:{health}/healthz")
        proc = Proc("agentry-operator", argv, work / "operator.log", env=env).start()
        ready = lambda: localhttp.get(f"http://127.0.0.1:{health}/healthz").is_success  # noqa: E731
        proc.wait_ready(ready, 60, "healthy", ports=ports)
        return proc

    return start_with_ports("the operator", 1, on)


def agent(ns: str, name: str, schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"instructions": "x", "model": {"name": "m"}}
    if schedule:
        spec["schedule"] = schedule
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Agent",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def workflow(ns: str, name: str) -> dict[str, Any]:
    # Allow: a run still going (its step's pod never runs here) must not make a fire time skipped.
    spec = {
        "steps": [{"name": "only", "agentRef": {"name": "worker"}}],
        "schedule": {"cron": EVERY_MINUTE, "concurrencyPolicy": "Allow"},
    }
    meta = {"name": name, "namespace": ns}
    return {"apiVersion": c.API_VERSION, "kind": w.WORKFLOW_KIND, "metadata": meta, "spec": spec}


async def create_all(config: KubeConfig, manifests: list[dict[str, Any]], concurrency: int) -> None:
    client = AsyncClient(config, field_manager="bench")
    sem = asyncio.Semaphore(concurrency)

    async def one(manifest: dict[str, Any]) -> None:
        async with sem:
            await client.create(from_dict(manifest))

    await asyncio.gather(*(one(m) for m in manifests))
    await client.close()


def wait_for(count: Callable[[], int], n: int, what: str, timeout: float = 900) -> float:
    """Seconds until `count()` reaches n."""
    t0 = time.monotonic()
    while count() < n:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the operator did not make {what} within {timeout:.0f} s")
        time.sleep(2)
    return time.monotonic() - t0


def armed(client: Client, kind: Any, namespaces: list[str]) -> int:
    """How many `kind` objects show upcomingRuns: the operator armed their timers."""
    listed = (o for ns in namespaces for o in client.list(kind, namespace=ns))
    return sum(bool((to_dict(o).get("status") or {}).get("upcomingRuns")) for o in listed)


def next_times(offset: float, count: int, step: float, lead: float) -> list[float]:
    """`count` times `step` apart, the first on a multiple of `step` at least `lead` s from now."""
    first = math.ceil((time.monotonic() + offset + lead) / step) * step
    return [first + k * step for k in range(count)]


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class Measured:
    what: str
    fires: Fires
    operator_cpu: float  # seconds (user + system) while the fires were measured
    plane_cpu: dict[str, float]  # the same, of kube-apiserver, etcd, kube-controller-manager
    peak_rss: int  # the operator's, bytes
    pods: list[float]  # CronJob backend: when the tick pods were seen, after their fire times


# --- The run -------------------------------------------------------------------------------------------


@dataclass
class Bench:
    plane: ControlPlane
    work: Path
    args: argparse.Namespace
    offset: float

    @property
    def config(self) -> KubeConfig:
        return KubeConfig.from_file(self.plane.kubeconfig)

    @property
    def seen(self) -> Path:
        return self.work / "seen.jsonl"

    def spawn(self) -> list[multiprocessing.process.BaseProcess]:
        """The watcher and the stand-in node, each a process of its own."""
        ctx = multiprocessing.get_context("spawn")
        found: list[multiprocessing.process.BaseProcess] = []
        for target, out in ((watch_main, self.seen), (node_main, self.work / "pods.jsonl")):
            args = (str(self.plane.kubeconfig), str(out), self.offset)
            found.append(ctx.Process(target=target, args=args, daemon=True))
            found[-1].start()
        return found

    def namespaces(self, client: Client, prefix: str) -> list[str]:
        return [_namespace(client, prefix) for _ in range(self.args.namespaces)]

    def keys(self, namespaces: list[str], prefix: str) -> Keys:
        return [(namespaces[i % len(namespaces)], f"{prefix}-{i}") for i in range(self.args.schedules)]

    def floor(self, client: Client) -> Fires:
        args, keys = self.args, self.keys(self.namespaces(client, "floor"), "floor")
        stamp = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # first through the watcher: its watch is open
        client.create(Execution.from_dict(tick.build_execution("sentinel", keys[0][0], stamp)))
        wait_for(lambda: sum(x["owner"] == "sentinel" for x in read_lines(self.seen)), 1, "the watcher", 60)
        times = next_times(self.offset, args.fires, 20, 5)
        asyncio.run(floor_rounds(self.config, keys, times, self.offset, args.concurrency))
        return settle(self.seen, "Execution", set(keys), times, self.offset)

    def agents(self, client: Client, namespaces: list[str]) -> Keys:
        """N scheduled Agents (CronJob backend), once the operator made their CronJobs."""
        tick_sa = Settings().tick_service_account  # the chart makes it; tick pods need it
        for ns in namespaces:
            client.create(ServiceAccount(metadata=ObjectMeta(name=tick_sa, namespace=ns)))
        keys = self.keys(namespaces, "a")
        schedule = {"cron": EVERY_MINUTE}
        asyncio.run(
            create_all(self.config, [agent(ns, n, schedule) for ns, n in keys], self.args.concurrency)
        )
        cronjobs = lambda: sum(len(list(client.list(CronJob, namespace=ns))) for ns in namespaces)  # noqa: E731
        took = wait_for(cronjobs, len(keys), "the CronJobs")
        print(f"  {len(keys)} CronJobs made {took:.0f} s after the Agents")
        return keys

    def timers(self, client: Client, namespaces: list[str]) -> Keys:
        """N Agents on the Operator backend, once their timers are armed (upcomingRuns written)."""
        keys = self.keys(namespaces, "t")
        schedule = {"cron": EVERY_MINUTE, "backend": "Operator", "concurrencyPolicy": "Allow"}
        manifests = [agent(ns, n, schedule) for ns, n in keys]
        asyncio.run(create_all(self.config, manifests, self.args.concurrency))
        took = wait_for(lambda: armed(client, Agent, namespaces), len(keys), "the timers")
        print(f"  {len(keys)} Agent timers armed {took:.0f} s after the Agents were created")
        return keys

    def workflows(self, client: Client, namespaces: list[str]) -> Keys:
        """N scheduled Workflows of one step, once the operator armed their timers (upcomingRuns)."""
        keys = self.keys(namespaces, "wf")
        for ns in namespaces:
            client.create(Agent.from_dict(agent(ns, "worker")))
        asyncio.run(create_all(self.config, [workflow(ns, n) for ns, n in keys], self.args.concurrency))
        took = wait_for(lambda: armed(client, Workflow, namespaces), len(keys), "the timers")
        print(f"  {len(keys)} Workflow timers armed {took:.0f} s after the Workflows were created")
        return keys

    def measure(
        self, client: Client, what: str, kind: str, prepare: Callable[[Client, list[str]], Keys]
    ) -> Measured:
        """One operator on fresh namespaces: its schedules prepared, then `--fires` fire times."""
        print(f"{what}: preparing {self.args.schedules} schedules")
        namespaces = self.namespaces(client, kind.lower()[:8])
        operator = start_operator(self.plane, self.work, namespaces)
        try:
            keys = prepare(client, namespaces)
            times = next_times(self.offset, self.args.fires, 60, 10)
            asyncio.run(until(self.offset, times[0] - 2))
            procs = {p.name: psutil.Process(p.pid) for p in [operator, *self.plane.procs]}
            before = {name: cpu_seconds(proc) for name, proc in procs.items()}
            with PeakRSS(operator.pid) as rss:
                found = settle(self.seen, kind, set(keys), times, self.offset)
            cpu = {name: cpu_seconds(proc) - before[name] for name, proc in procs.items()}
        finally:
            operator.stop()
        pods = pod_drifts(read_lines(self.work / "pods.jsonl"), times) if kind == "Execution" else []
        return Measured(what, found, cpu.pop(operator.name), cpu, rss.peak, pods)


def report(args: argparse.Namespace, floor: Fires, m: Measured) -> None:
    """Print one measurement next to the floor and record its rows."""
    per = f"{args.schedules} schedules every minute, {args.fires} fire times"
    f = m.fires
    r50, r99 = f.p(0.5) / floor.p(0.5), f.p(0.99) / floor.p(0.99)
    met = f.p(0.99) <= GOAL_P99
    print(f"{m.what} ({per}): drift {f.text()}")
    if m.pods:
        spread = f"p50 {percentile(m.pods, 0.5):.3f} s, p99 {percentile(m.pods, 0.99):.3f} s"
        print(f"  of which the controllers' part (CronJob -> Job -> Pod seen by the node): {spread}")
    verdict = f"p99 <= {GOAL_P99:.0f} s {'met' if met else 'NOT met'}"
    print(f"  ratio to the floor: p50 {r50:.1f}x, p99 {r99:.1f}x; {verdict}")
    cpu = f"operator CPU {m.operator_cpu:.1f} s ({m.operator_cpu / args.fires:.1f} s per fire time)"
    rss = f"operator peak RSS {m.peak_rss / 2**20:.0f} MiB"
    plane = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in m.plane_cpu.items())
    print(f"  {cpu}; {rss}; CPU of {plane}")
    base = f"plain client, {args.schedules} Executions at the fire time: p99 {floor.p(0.99):.2f} s"
    record(
        "schedule_drift",
        f"{m.what}, {per}: drift p99",
        f"{f.p(0.99):.2f} s",
        baseline=base,
        ratio=f"{r99:.1f}x",
        goal="<= 1 s",
        met=met,
    )
    record(
        "schedule_drift",
        f"{m.what}: drift p50 / max",
        f"{f.p(0.5):.2f} s / {f.max:.2f} s",
        baseline=f"floor p50 {floor.p(0.5):.2f} s",
        ratio=f"{r50:.1f}x",
    )
    record(
        "schedule_drift",
        f"{m.what}: fires missed / doubled",
        f"{f.missed} / {f.doubled}",
        goal="0 / 0",
        met=not (f.missed or f.doubled),
    )
    record(
        "schedule_drift",
        f"{m.what}: operator CPU per fire time; peak RSS",
        f"{m.operator_cpu / args.fires:.1f} s; {m.peak_rss / 2**20:.0f} MiB",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.schedule_drift")
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--fires", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-drift-"))
    bench = Bench(ControlPlane(work / "kube").start(), work, args, clock())
    children: list[multiprocessing.process.BaseProcess] = []
    try:
        client = Client(bench.config, field_manager="bench")
        bench.plane.kubectl("apply", "--server-side", "-f", str(REPO / "manifests" / "crds"))
        bench.plane.kubectl(
            "wait", "--for=condition=Established", "crd/executions.agentry.dev", "crd/workflows.agentry.dev"
        )
        children = bench.spawn()
        floor = bench.floor(client)
        how = f"{args.schedules} Executions at each time, {args.concurrency} at once"
        print(f"floor (plain client, {how}): {floor.text()}")
        chosen = [p for p in PHASES if p in args.phases]
        measured = [bench.measure(client, *PHASES[p], getattr(bench, p)) for p in chosen]
    finally:
        for child in children:
            child.terminate()
        bench.plane.stop()
        shutil.rmtree(work / "kube" / "etcd", ignore_errors=True)  # ~0.5 GB; the logs stay
    for m in measured:
        report(args, floor, m)
    bad = [
        f"{m.what}: {m.fires.missed} missed, {m.fires.doubled} doubled"
        for m in measured
        if m.fires.missed or m.fires.doubled
    ]
    if floor.missed or floor.doubled:
        bad.append(f"floor: {floor.missed} missed, {floor.doubled} doubled")
    if bad:
        raise SystemExit(f"fires missed or doubled (must be none): {'; '.join(bad)} (logs in {work})")


if __name__ == "__main__":
    main()
