"""Benchmarks on the local control plane. Prints figures and ratios to a baseline of the same run.

    python -m bench [--jobs N] [--executions N] [--concurrency C] [--rounds R]

1. Bare-client ceiling: seconds for a plain async client to create N Jobs (N/s).
2. Rounds (--rounds, 3): the minimum work any operator must cause for N runs, done by a bare client
   (create the Execution, its Job, patch its status), then a new operator with N Executions created at
   once -> seconds until N Jobs exist. The median round's ratio is the figure (the machine is shared:
   single runs varied by 0.3x); also the operator's CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Execution

from .operator_proc import Peak, plane_with_crds, record_rss, start_operator, wait_count
from .results import record


def _job(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"bare-{i}", "namespace": ns},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
        },
    }


async def _minimum_work(config: KubeConfig, ns: str, n: int, concurrency: int) -> float:
    """The writes any operator must cause per run, done by a bare client: Execution, Job, status."""
    client = AsyncClient(config, field_manager="bench")
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.create(from_dict(_execution(ns, f"floor-{i}", "none")))
            await client.create(from_dict(_job(ns, i)))
            await client.patch(
                Execution.Status,
                f"floor-{i}",
                {"status": {"phase": "Pending"}},
                namespace=ns,
                patch_type=PatchType.MERGE,
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


def _execution(ns: str, name: str, agent: str) -> dict[str, Any]:
    return {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"agentRef": {"name": agent}},
    }


async def _create_all(config: KubeConfig, manifests: list[dict[str, Any]], concurrency: int) -> float:
    client = AsyncClient(config, field_manager="bench")
    sem = asyncio.Semaphore(concurrency)

    async def one(m: dict[str, Any]) -> None:
        async with sem:
            await client.create(from_dict(m))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in manifests))
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


def _namespace(client: Client, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.create(Namespace.from_dict({"metadata": {"name": name}}))  # type: ignore[call-overload]
    return name


@dataclass
class Round:
    floor: float  # the bare client's minimum work, seconds
    created: float  # the Executions created, seconds
    total: float  # until every Job exists, seconds
    cpu: float  # the operator's CPU meanwhile, seconds
    rss: int  # the operator's peak RSS, bytes

    @property
    def ratio(self) -> float:
        return self.total / self.floor


AGENT_SPEC = {
    "instructions": "x",
    "model": {"name": "m"},
    "historyLimits": {"succeeded": 1000, "failed": 1000},
}


def _operator_phase(plane: ControlPlane, work: Path, client: Client, config: KubeConfig, args: Any) -> Round:
    """A new namespace and operator; N Executions created at once; seconds until N Jobs exist."""
    ns = _namespace(client, "op")  # the only namespace the operator watches
    operator = start_operator(plane, work, ns)
    try:
        agent = {"apiVersion": "agentry.dev/v1alpha1", "kind": "Agent", "spec": AGENT_SPEC}
        client.create(from_dict({**agent, "metadata": {"name": "bench", "namespace": ns}}))
        peak = Peak(operator.pid, every=0.05)
        cpu0 = sum(peak.proc.cpu_times()[:2])
        executions = [_execution(ns, f"ex-{i}", "bench") for i in range(args.executions)]
        t0 = time.perf_counter()
        asyncio.run(_create_all(config, executions, args.concurrency))
        created = time.perf_counter() - t0
        wait_count(client, Job, ns, args.executions, limit=1800)
        total = time.perf_counter() - t0
        rss = peak.stop()
        cpu = sum(peak.proc.cpu_times()[:2]) - cpu0
    finally:
        operator.stop()
    return Round(0.0, created, total, cpu, rss)


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
        baseline=f"bare client doing the minimum work (Execution, Job, status patch) {mid.floor:.1f} s",
        ratio=f"{mid.ratio:.2f}x",
        goal="<= 1.25x",
        met=mid.ratio <= 1.25,
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
        print(
            f"bare-client ceiling: {args.jobs} Jobs in {bare:.2f} s = {args.jobs / bare:.0f} Jobs/s "
            f"(concurrency {args.concurrency})"
        )
        rounds = []
        for number in range(1, args.rounds + 1):
            floor_ns = _namespace(client, "floor")
            floor = asyncio.run(_minimum_work(config, floor_ns, args.executions, args.concurrency))
            one = replace(_operator_phase(plane, work, client, config, args), floor=floor)
            rounds.append(one)
            print(
                f"round {number}: bare-client minimum work (Execution + Job + status patch) "
                f"x {args.executions}: {floor:.2f} s; operator: Executions created in {one.created:.2f} s, "
                f"every Job after {one.total:.2f} s ({one.ratio:.2f}x), its CPU meanwhile {one.cpu:.1f} s",
                flush=True,
            )
        _report(rounds, bare, args)
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
