"""Benchmarks on the local control plane. Prints figures and ratios to a baseline of the same run.

    python -m bench [--jobs N] [--executions N] [--concurrency C] [--rounds R]

1. Bare-client ceiling: seconds for a plain async client to create N Jobs (N/s).
2. Rounds (--rounds, 3): the minimum work any operator must cause for N runs, done by a bare client
   (create the Execution, its Job, patch its status), then the same three writes with the operator's
   own Job and status patch (from its builders), sent by the operator's own hot path (wire.py) with
   nothing watched or decided: the floor of this product's run, as cheaply as it can be sent; then
   an operator that only watches and writes (ideal_operator.py: the floor of any operator of this
   product, in a process of its own) and a new operator, each with N Executions created at once ->
   seconds until N Jobs exist. The median round's ratio to the first floor is the figure (the
   machine is shared: single runs varied by 0.3x); also the ratios to the second floor and to the
   operator that only watches and writes, that one's ratio to the first floor, the operator's CPU
   and peak RSS, and the CPU the control plane and the bench's client used in each phase. Each
   phase starts once the Job controller has made the previous phase's pods; one unmeasured run of
   each floor comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.types import PatchType

from agentry_localcluster.kube import REPO, ControlPlane
from agentry_operator import kube
from agentry_operator.controller.wire import JSON, collection
from agentry_operator.kube import Execution

from .operator_proc import Peak, PlaneCpu, cpu_line, plane_with_crds, record_rss, start_operator, wait_count
from .results import record
from .runs import (
    AGENT_SPEC,
    EXECUTIONS,
    JOBS,
    Writes,
    execution_manifest,
    operator_writes,
    start_run,
    wire_for,
)


def _job(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"bare-{i}", "namespace": ns},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
        },
    }


def _bare_writes(ns: str, i: int, execution: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The issue's floor: a one-container Job and a one-field status."""
    return _job(ns, i), {"phase": "Pending"}


One = Callable[[int], Awaitable[None]]


async def _timed(n: int, concurrency: int, one: One) -> float:
    """Seconds for `one(i)` of N runs, `concurrency` at once."""
    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with sem:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(n)))
    return time.perf_counter() - t0


async def _minimum_work(config: KubeConfig, ns: str, n: int, concurrency: int, writes: Writes) -> float:
    """The writes any operator must cause per run, done by a bare lightkube client: Execution, Job,
    status."""
    client = AsyncClient(config, field_manager="bench")

    async def one(i: int) -> None:
        execution = await client.create(from_dict(execution_manifest(ns, f"floor-{i}", "none")))
        job, status = writes(ns, i, kube.to_dict(execution))
        await client.create(JOBS.from_dict(job))  # a plain dict: no typed model on the client
        await client.patch(
            Execution.Status, f"floor-{i}", {"status": status}, namespace=ns, patch_type=PatchType.MERGE
        )

    try:
        return await _timed(n, concurrency, one)
    finally:
        await client.close()


async def _wire_work(config: KubeConfig, ns: str, n: int, concurrency: int, writes: Writes) -> float:
    """The same three writes sent the cheapest way this project has: the operator's own hot path,
    with nothing watched or decided."""
    async with wire_for(config, concurrency) as wire:

        async def one(i: int) -> None:
            execution = execution_manifest(ns, f"floor-{i}", "none")
            answer = await wire.send("POST", collection(EXECUTIONS, ns), execution, JSON)
            if answer is None:
                raise SystemExit("the API server refused the bench's credentials")
            await start_run(wire, i, msgspec.json.decode(answer), writes)

        return await _timed(n, concurrency, one)


async def _create_all(config: KubeConfig, manifests: list[dict[str, Any]], concurrency: int) -> float:
    client = AsyncClient(config, field_manager="bench")

    async def one(i: int) -> None:
        await client.create(from_dict(manifests[i]))

    try:
        return await _timed(len(manifests), concurrency, one)
    finally:
        await client.close()


def _namespace(client: Client, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.create(Namespace.from_dict({"metadata": {"name": name}}))  # type: ignore[call-overload]
    return name


@dataclass
class Round:
    created: float  # the Executions created, seconds
    total: float  # until every Job exists, seconds
    cpu: float  # the operator's CPU meanwhile, seconds
    rss: int  # the operator's peak RSS, bytes
    plane: dict[str, float]  # the control plane's and the client's CPU meanwhile, seconds
    floors: dict[str, Floor] = field(default_factory=dict)  # "bare", "operator's writes"
    ideal: float = 0.0  # an operator that only watches and writes (ideal_operator.py), seconds

    @property
    def ratio(self) -> float:
        return self.total / self.floors[BARE].seconds

    @property
    def own_ratio(self) -> float:
        return self.total / self.floors[OWN].seconds

    @property
    def ideal_ratio(self) -> float:
        return self.total / self.ideal

    @property
    def ideal_floor_ratio(self) -> float:
        return self.ideal / self.floors[BARE].seconds


@dataclass(frozen=True)
class Floor:
    seconds: float
    cpu: dict[str, float]  # the control plane's and the client's, seconds


BARE, OWN = "bare", "the operator's own Job and status, sent by its hot path"
Work = Callable[[KubeConfig, str, int, int, Writes], Coroutine[Any, Any, float]]
# The floor (a lightkube client, a one-container Job), and this product's (its own writes, sent
# as cheaply as this project can send them).
FLOORS: dict[str, tuple[Work, Writes]] = {
    BARE: (_minimum_work, _bare_writes),
    OWN: (_wire_work, operator_writes),
}


def _floor(plane: ControlPlane, client: Client, config: KubeConfig, args: Any, name: str) -> Floor:
    """One floor's writes for N runs in a new namespace: seconds, and the CPU they cost."""
    ns = _namespace(client, "floor")
    cpu = PlaneCpu(plane)
    work, writes = FLOORS[name]
    seconds = asyncio.run(work(config, ns, args.executions, args.concurrency, writes))
    used = cpu.used()
    _settle(client, ns, args.executions)
    return Floor(seconds, used)


def _warm_up(client: Client, config: KubeConfig) -> None:
    """One run of each floor, unmeasured: the first Execution the API server stores takes it ~2 s (the
    custom resource's storage and validation made ready), which landed in round 1's floor."""
    for work, writes in FLOORS.values():
        asyncio.run(work(config, _namespace(client, "warm"), 1, 1, writes))


def _settle(client: Client, ns: str, jobs: int) -> None:
    """Wait until the Job controller has made the pods of the `jobs` Jobs in `ns`, so that the next
    phase starts on a quiet control plane (it went on creating them into the next phase's time)."""
    wait_count(client, Pod, ns, jobs, limit=600)


def _runs_to_jobs(client: Client, config: KubeConfig, ns: str, args: Any) -> tuple[float, float]:
    """N Executions created at once in `ns`: seconds until they exist, and until N Jobs exist."""
    executions = [execution_manifest(ns, f"ex-{i}", "bench") for i in range(args.executions)]
    t0 = time.perf_counter()
    asyncio.run(_create_all(config, executions, args.concurrency))
    created = time.perf_counter() - t0
    wait_count(client, Job, ns, args.executions, limit=1800)
    return created, time.perf_counter() - t0


def _operator_phase(plane: ControlPlane, work: Path, client: Client, config: KubeConfig, args: Any) -> Round:
    """A new namespace and operator; N Executions created at once; seconds until N Jobs exist."""
    ns = _namespace(client, "op")  # the only namespace the operator watches
    operator = start_operator(plane, work, ns)
    try:
        agent = {"apiVersion": "agentry.dev/v1alpha1", "kind": "Agent", "spec": AGENT_SPEC}
        client.create(from_dict({**agent, "metadata": {"name": "bench", "namespace": ns}}))
        peak = Peak(operator.pid, every=0.05)
        cpu0, plane_cpu = sum(peak.proc.cpu_times()[:2]), PlaneCpu(plane)
        created, total = _runs_to_jobs(client, config, ns, args)
        rss = peak.stop()
        cpu = sum(peak.proc.cpu_times()[:2]) - cpu0
        used = plane_cpu.used()
    finally:
        operator.stop()
    _settle(client, ns, args.executions)
    return Round(created, total, cpu, rss, used)


def _ideal_phase(plane: ControlPlane, client: Client, config: KubeConfig, args: Any) -> float:
    """A new namespace and ideal_operator.py; N Executions created at once; seconds until N Jobs
    exist."""
    ns = _namespace(client, "ideal")
    command = [sys.executable, "-m", "bench.ideal_operator", str(plane.kubeconfig), ns]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench.ideal_operator did not start (exit code {proc.wait()})")
        _, seconds = _runs_to_jobs(client, config, ns, args)
    finally:
        proc.kill()
        proc.wait()
    _settle(client, ns, args.executions)
    return seconds


def _report(rounds: list[Round], bare: float, args: Any) -> None:
    """The median round (by its ratio to the floor of the same round) and the peak RSS of all."""
    mid = sorted(rounds, key=lambda r: r.ratio)[len(rounds) // 2]
    ratios = ", ".join(f"{r.ratio:.2f}x" for r in rounds)
    n = args.executions
    print(f"ratio to bare-client minimum work, median of {len(rounds)} rounds: {mid.ratio:.2f}x ({ratios})")
    record(
        "operator",
        f"{n} Executions created at once: seconds until {n} Jobs exist (median of {len(rounds)} rounds)",
        f"{mid.total:.1f} s",
        baseline="bare client doing the minimum work (Execution, Job, status patch) "
        f"{mid.floors[BARE].seconds:.1f} s",
        ratio=f"{mid.ratio:.2f}x",
        goal="<= 1.25x",
        met=mid.ratio <= 1.25,
    )
    own = sorted(rounds, key=lambda r: r.own_ratio)[len(rounds) // 2]
    print(f"ratio to the operator's own writes sent by its hot path alone, median: {own.own_ratio:.2f}x")
    record(
        "operator",
        f"{n} Executions created at once, against the three writes with the operator's own Job and status",
        f"{own.total:.1f} s",
        baseline=f"its Job and status patch sent by its hot path alone {own.floors[OWN].seconds:.1f} s",
        ratio=f"{own.own_ratio:.2f}x",
    )
    floor = sorted(rounds, key=lambda r: r.ideal_floor_ratio)[len(rounds) // 2]
    ideal_ratios = ", ".join(f"{r.ideal_floor_ratio:.2f}x" for r in rounds)
    print(
        f"an operator that only watches and writes, to the bare client, median: "
        f"{floor.ideal_floor_ratio:.2f}x ({ideal_ratios})"
    )
    record(
        "operator",
        f"{n} Executions created at once, an operator that only watches and writes "
        "(bench/ideal_operator.py): seconds until every Job exists",
        f"{floor.ideal:.1f} s",
        baseline=f"bare client doing the minimum work {floor.floors[BARE].seconds:.1f} s",
        ratio=f"{floor.ideal_floor_ratio:.2f}x",
    )
    ideal = sorted(rounds, key=lambda r: r.ideal_ratio)[len(rounds) // 2]
    print(f"ratio to an operator that only watches and writes, median: {ideal.ideal_ratio:.2f}x")
    record(
        "operator",
        f"{n} Executions created at once, against an operator that only watches and writes",
        f"{ideal.total:.1f} s",
        baseline=f"that operator {ideal.ideal:.1f} s",
        ratio=f"{ideal.ideal_ratio:.2f}x",
    )
    ceiling = bare * n / args.jobs
    print(f"ratio to bare-client ceiling (Jobs only): {mid.total / ceiling:.2f}x")
    record_rss("operator", f"operator peak RSS while creating {n} Jobs", max(r.rss for r in rounds))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="floor and operator alternately, this many times"
    )
    args = parser.parse_args()

    work, plane, config, client = plane_with_crds("agentry-bench-")
    try:
        ns = _namespace(client, "bare")
        bare = asyncio.run(_create_all(config, [_job(ns, i) for i in range(args.jobs)], args.concurrency))
        _settle(client, ns, args.jobs)
        print(
            f"bare-client ceiling: {args.jobs} Jobs in {bare:.2f} s = {args.jobs / bare:.0f} Jobs/s "
            f"(concurrency {args.concurrency})"
        )
        _warm_up(client, config)
        rounds = []
        for number in range(1, args.rounds + 1):
            floors = {name: _floor(plane, client, config, args, name) for name in FLOORS}
            ideal = _ideal_phase(plane, client, config, args)
            one = _operator_phase(plane, work, client, config, args)
            one.floors.update(floors)
            one.ideal = ideal
            rounds.append(one)
            print(
                f"round {number}: bare-client minimum work (Execution + Job + status patch)"
                f" x {args.executions}: {floors[BARE].seconds:.2f} s, the operator's own writes by its"
                f" hot path {floors[OWN].seconds:.2f} s;"
                f" operator: Executions created in {one.created:.2f} s, every Job after {one.total:.2f} s"
                f" ({one.ratio:.2f}x, {one.own_ratio:.2f}x), its CPU meanwhile {one.cpu:.1f} s;"
                f" an operator that only watches and writes {ideal:.2f} s ({one.ideal_floor_ratio:.2f}x the"
                f" bare client; the operator {one.ideal_ratio:.2f}x it)",
                flush=True,
            )
            for name, floor in floors.items():
                print(f"  CPU during the floor ({name}): {cpu_line(floor.cpu)}")
            print(
                f"  CPU during the operator's phase, the operator's apart: {cpu_line(one.plane)}", flush=True
            )
        _report(rounds, bare, args)
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
