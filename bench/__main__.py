"""Benchmarks on the local control plane. Prints figures and ratios to a baseline of the same run.

    python -m bench [--jobs N] [--executions N] [--concurrency C]

1. Bare-client ceiling: seconds for a plain async client to create N Jobs (N/s).
2. Operator: N Executions created at once -> seconds until N Jobs exist, as a ratio to (1);
   and the operator's peak RSS while it works.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace
from lightkube.types import PatchType

from agentry_operator.kube import Execution

from .operator_proc import Peak, plane_with_crds, start_operator, wait_count
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    work, plane, config, client = plane_with_crds("agentry-bench-")
    try:
        ns = _namespace(client, "bare")
        bare = asyncio.run(_create_all(config, [_job(ns, i) for i in range(args.jobs)], args.concurrency))
        floor_ns = _namespace(client, "floor")
        floor = asyncio.run(_minimum_work(config, floor_ns, args.executions, args.concurrency))
        print(f"bare-client minimum work (Execution + Job + status patch) x {args.executions}: {floor:.2f} s")
        print(
            f"bare-client ceiling: {args.jobs} Jobs in {bare:.2f} s = {args.jobs / bare:.0f} Jobs/s "
            f"(concurrency {args.concurrency})"
        )

        ns = _namespace(client, "op")  # the only namespace the operator watches

        operator = start_operator(plane, work, ns)
        client.create(
            from_dict(
                {
                    "apiVersion": "agentry.dev/v1alpha1",
                    "kind": "Agent",
                    "metadata": {"name": "bench", "namespace": ns},
                    "spec": {
                        "instructions": "x",
                        "model": {"name": "m"},
                        "historyLimits": {"succeeded": 1000, "failed": 1000},
                    },
                }
            )
        )
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
        idle_rss = peak.proc.memory_info().rss
        operator.stop()
        ceiling = bare * args.executions / args.jobs
        print(
            f"operator: {args.executions} Executions created in {created:.2f} s; "
            f"{args.executions} Jobs exist after {total:.2f} s; the operator's CPU meanwhile {cpu:.1f} s"
        )
        print(f"ratio to bare-client ceiling: {total / ceiling:.2f}x (target <= 1.5x)")
        record(
            "operator",
            f"{args.executions} Executions created at once: seconds until {args.executions} Jobs exist",
            f"{total:.1f} s",
            baseline=f"bare client, same number of Jobs {ceiling:.1f} s",
            ratio=f"{total / ceiling:.2f}x",
            goal="<= 1.5x",
            met=total / ceiling <= 1.5,
        )
        print(f"ratio to bare-client minimum work: {total / floor:.2f}x")
        print(
            f"operator peak RSS: {rss / 2**20:.0f} MiB (target <= 200 MiB); "
            f"after run {idle_rss / 2**20:.0f} MiB"
        )
        record(
            "operator",
            f"operator peak RSS while creating {args.executions} Jobs",
            f"{rss / 2**20:.0f} MiB",
            goal="<= 200 MiB",
            met=rss <= 200 * 2**20,
        )
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
