"""Budgets that hold where others leak: concurrent calls at a nearly spent budget through two instances
of each gateway, and what each let through beyond the limit.

    python -m bench.overspend [--allowed 100] [--left 5] [--burst 100]

The budget is `allowed` calls' cost (every scripted answer costs the same). First `allowed - left`
calls are made one at a time, alternating between the two instances (a load balancer's round robin);
then `burst` calls start at once, half on each instance. Spend is what the provider served (its
request log: every answered call is billed), so overspend = served * cost - limit.

  agentry (firestore, 2 pods)   two gateways sharing the Firestore emulator: reserve-then-settle
  litellm (in memory, 2 pods)   LiteLLM's deployment budget, each instance counting its own spend
  litellm (redis, 2 pods)       the same with the spend shared through Redis (LiteLLM syncs each second)

Agentry's bound (docs/governance.md, "The bound"): spend ≤ limit + Σ over calls in flight of
max(0, actual - estimate); here estimates cover the actual input, so the bound is the limit itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path as FsPath

from agentry_gateway.budgets import estimate_call
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import Proc

from . import litellm_env
from .results import record
from .servers import (
    MODEL,
    PRICE_IN,
    PRICE_OUT,
    agentry_config,
    call_cost,
    run_token,
    start_agentry,
    start_redis,
    start_scripted,
    upstream_calls,
)
from .streams import BODY, Path, stream_call

BENCH = "overspend"
Starter = Callable[[FsPath, str, Decimal], tuple[list[Proc], list[Path]]]


def agentry_pair(emulator: FirestoreEmulator) -> Starter:
    def start(work: FsPath, upstream: str, limit: Decimal) -> tuple[list[Proc], list[Path]]:
        env = {
            "AGENTRY_GATEWAY_LEDGER": "firestore",
            "FIRESTORE_EMULATOR_HOST": emulator.address,
            "GOOGLE_CLOUD_PROJECT": f"bench-{uuid.uuid4().hex[:8]}",  # a fresh ledger
        }
        token = run_token()
        procs, paths = [], []
        for i in (1, 2):
            proc, url = start_agentry(work, f"agentry-{i}", agentry_config(upstream, limit), env)
            procs.append(proc)
            paths.append(Path(f"agentry-{i}", f"{url}/v1", token))
        return procs, paths

    return start


def litellm_pair(redis_port: int | None) -> Starter:
    def start(work: FsPath, upstream: str, limit: Decimal) -> tuple[list[Proc], list[Path]]:
        conf = litellm_env.config(upstream, MODEL, PRICE_IN, PRICE_OUT, limit, redis_port)
        procs, paths = [], []
        suffix = "redis" if redis_port else "memory"
        for i in (1, 2):
            proc, url = litellm_env.start(work, f"litellm-{suffix}-{i}", conf)
            procs.append(proc)
            paths.append(Path(f"litellm-{i}", f"{url}/v1", litellm_env.MASTER_KEY))
        return procs, paths

    return start


async def spend(paths: list[Path], before: int, burst: int, settle: float) -> tuple[int, int, list[int]]:
    """The sequential calls, the burst, then one call per instance once counters caught up (is the
    budget enforced at all?); returns what the clients saw: answered before, answered in the burst,
    and the status of each last call. All of them count as spent."""
    try:
        ok_before = 0
        for i in range(before):
            ok_before += (await stream_call(paths[i % 2])).ok
        await asyncio.sleep(settle)  # let every instance's counters see the spend (LiteLLM: Redis sync)
        samples = await asyncio.gather(*(stream_call(paths[i % 2]) for i in range(burst)))
        await asyncio.sleep(settle)
        after = [(await stream_call(p)).status for p in paths]
        return ok_before, sum(s.ok for s in samples), after
    finally:
        for p in paths:
            await p.client.aclose()


def run_one(
    name: str, start: Starter, work: FsPath, upstream: str, args: argparse.Namespace
) -> dict[str, object]:
    cost = call_cost()
    limit = cost * args.allowed
    procs, paths = start(work, upstream, limit)
    try:
        served0 = upstream_calls(upstream)
        ok_before, ok_burst, after = asyncio.run(
            spend(paths, args.allowed - args.left, args.burst, args.settle)
        )
        served = upstream_calls(upstream) - served0
    finally:
        for proc in procs:
            proc.stop()
    over = max(Decimal(0), served * cost - limit)
    return {
        "name": name,
        "limit": limit,
        "served": served,
        "before": ok_before,
        "burst_ok": ok_burst,
        "after_ok": sum(status == 200 for status in after),
        "after": "/".join(map(str, after)),
        "over_usd": over,
        "over_calls": over / cost,
    }


def report(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    size = len(json.dumps(BODY).encode())
    estimate = estimate_call(MODEL, size, int(str(BODY["max_tokens"]))).cost_usd
    bound = max(Decimal(0), call_cost() - estimate)  # per call in flight; 0: estimates cover it
    print(
        f"\noverspend: budget = {args.allowed} calls (${call_cost() * args.allowed:.7f}), "
        f"{args.allowed - args.left} spent first, then {args.burst} concurrent calls over 2 instances"
    )
    print(f"  Agentry's estimate per call ${estimate:.7f} >= actual ${call_cost():.7f}: bound = limit + 0")
    print("  served: calls the provider answered, all included; then: one more call per instance after")
    print(
        f"  {'gateway':<30} {'served':>7} {'burst ok':>9} {'overspend USD':>14} {'in calls':>9}"
        f" {'% of limit':>10}  then"
    )
    for row in rows:
        over_usd, limit = Decimal(str(row["over_usd"])), Decimal(str(row["limit"]))
        print(
            f"  {row['name']!s:<30} {row['served']!s:>7} {row['burst_ok']!s:>9} {over_usd:14.7f}"
            f" {float(str(row['over_calls'])):9.1f} {float(over_usd / limit * 100):9.1f}%  {row['after']}"
        )
        ours = str(row["name"]).startswith("agentry")
        record(
            BENCH,
            f"overspend, {args.burst} concurrent calls at a budget with {args.left} of {args.allowed} calls"
            f" left, 2 instances: {row['name']}",
            f"${over_usd:.7f} ({float(str(row['over_calls'])):.0f} calls)",
            baseline=f"limit ${limit:.7f}",
            ratio=f"{float((over_usd + limit) / limit):.2f}x",
            goal=f"<= one in-flight call's estimate error (${bound:.7f})" if ours else "",
            met=(over_usd <= bound) if ours else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.overspend")
    parser.add_argument("--allowed", type=int, default=100, help="the budget, in calls' cost")
    parser.add_argument("--left", type=int, default=5, help="calls' cost left when the burst starts")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--settle", type=float, default=2.5, help="seconds for counters to catch up")
    args = parser.parse_args()

    work = FsPath(tempfile.mkdtemp(prefix="agentry-bench-overspend-"))
    llm, upstream = start_scripted(work, (args.allowed + args.burst) * 3 + 10, 0.0)
    emulator = FirestoreEmulator(work / "firestore").start()
    procs: list[Proc] = [llm]
    starters: list[tuple[str, Starter]] = [
        ("agentry (firestore, 2 pods)", agentry_pair(emulator)),
        ("litellm (in memory, 2 pods)", litellm_pair(None)),
    ]
    try:
        if not shutil.which("redis-server"):
            raise SystemExit(
                "redis-server is needed for LiteLLM's shared budget: apt-get install redis-server"
            )
        redis, port = start_redis(work)
        procs.append(redis)
        starters.append(("litellm (redis, 2 pods)", litellm_pair(port)))
        rows = [run_one(name, start, work, upstream, args) for name, start in starters]
        report(rows, args)
    finally:
        for proc in reversed(procs):
            proc.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
