"""The checkpoint store under load: 200 runs journaling at once through one gateway process on the
Firestore emulator, as ratios to baselines from the same run.

    python -m bench.checkpoint_store [--runs 200] [--appends 12] [--big-every 6]

Processes: the Firestore emulator, the gateway (`python -m agentry_gateway`, Firestore ledger, so
journals in Firestore) and this client (aiohttp). Each run holds its own run token and appends its
turns one after another, as the runtime does: a batch of 1-2 entries of 2-6 KB (a model answer, a
tool call's intent), and every `--big-every`th batch a 100 KB tool result; at the end it reads its
journal back (what a resumed pod does). Figures:

* append latency p50/p99 with all runs at once, against the same appends of one run alone (the
  store's own floor, same payloads) and against a GET /healthz round trip under the same load (the
  gateway's event loop, without the store);
* the gateway's RSS at its peak under load, against its RSS idle before the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from agentry_common.checkpoints import CHECKPOINT_PATH, Entry, sign_entry
from agentry_common.tokens import Keyring, mint_run_token
from agentry_localcluster.firestore import FirestoreEmulator

from .gateway_overhead import KEY, start_gateway
from .results import record
from .servers import PeakRSS

BENCH = "checkpoint_store"
KEYRING = Keyring.single(KEY, "bench")
UNUSED_UPSTREAM = "http://127.0.0.1:9"  # the gateway needs a channel; no LLM call is made


def ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def token(i: int) -> str:
    return mint_run_token(
        KEYRING,
        namespace="bench",
        execution=f"run-{i}",
        execution_uid=f"uid-{i}",
        agent="a",
        active_deadline_seconds=3600,
    )


def batches(i: int, appends: int, big_every: int) -> list[list[Entry]]:
    """A run's journal in append batches: realistic sizes, signed in a chain."""
    rng = random.Random(i)
    out: list[list[Entry]] = []
    seq, previous = 1, ""
    for n in range(appends):
        sizes = (
            [100 * 1024]
            if big_every and (n + 1) % big_every == 0
            else [rng.randint(2, 6) * 1024] * rng.randint(1, 2)
        )
        batch: list[Entry] = []
        for size in sizes:
            data = {"text": "".join(rng.choices("abcdefghij klmnop", k=size))}
            batch.append(sign_entry("k", previous, seq, "tool_result", data))
            previous, seq = batch[-1].sig, seq + 1
        out.append(batch)
    return out


async def journal_run(
    session: aiohttp.ClientSession, url: str, i: int, appends: int, big_every: int, took: list[float]
) -> None:
    headers = {"authorization": f"Bearer {token(i)}"}
    for batch in batches(i, appends, big_every):
        body = {"entries": [e.wire() for e in batch]}
        started = time.perf_counter()
        async with session.post(f"{url}{CHECKPOINT_PATH}", json=body, headers=headers) as answer:
            if answer.status != 200:
                raise RuntimeError(f"run {i}: append answered {answer.status}: {await answer.text()}")
            await answer.read()
        took.append(time.perf_counter() - started)
    async with session.get(f"{url}{CHECKPOINT_PATH}", headers=headers) as answer:
        journal = await answer.json()
        if journal["last"] != journal["entries"][-1]["seq"] or journal["more"]:
            raise RuntimeError(f"run {i}: read back {journal['last']} entries, more={journal['more']}")


async def healthz_probe(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event, took: list[float]
) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{url}/healthz") as answer:
            await answer.read()
        took.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)


async def load(
    url: str, runs: int, first: int, appends: int, big_every: int
) -> tuple[list[float], list[float], float]:
    """Runs `first`..`first + runs` journaling at once: append latencies, /healthz latencies, seconds."""
    appended: list[float] = []
    probed: list[float] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=runs + 2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=600)
    ) as session:
        probe = asyncio.create_task(healthz_probe(session, url, stop, probed))
        started = time.perf_counter()
        await asyncio.gather(
            *(journal_run(session, url, first + i, appends, big_every, appended) for i in range(runs))
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await probe
    return appended, probed, elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the emulator is a Java child of a script)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_store")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--appends", type=int, default=12, help="append batches per run")
    parser.add_argument("--big-every", type=int, default=6, help="every Nth batch is a 100 KB tool result")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentry-bench-cp-"))
    emulator = FirestoreEmulator(work / "firestore").start()
    env = {"FIRESTORE_EMULATOR_HOST": emulator.address, "GOOGLE_CLOUD_PROJECT": "bench-checkpoints"}
    gateway, url = start_gateway(work, "gateway", UNUSED_UPSTREAM, "firestore", env)
    try:
        # Warm-up (imports, the Firestore channel, the routes' models), then the idle baseline.
        asyncio.run(load(url, 2, 10_000, 2, 0))
        time.sleep(1)
        idle = PeakRSS(gateway.pid).tree_rss()
        alone, alone_probe, _ = asyncio.run(load(url, 1, 20_000, args.appends * 4, args.big_every))
        assert emulator.proc is not None
        cpu = {"gateway": gateway.pid, "Firestore emulator": emulator.proc.pid}
        before = {name: cpu_seconds(pid) for name, pid in cpu.items()}
        with PeakRSS(gateway.pid) as rss:
            many, probed, elapsed = asyncio.run(load(url, args.runs, 0, args.appends, args.big_every))
        for name, pid in cpu.items():  # where the time goes (2 cores shared by all three)
            print(f"  CPU under load: {name} {cpu_seconds(pid) - before[name]:.1f} s in {elapsed:.1f} s")
        report(args, alone, alone_probe, many, probed, elapsed, idle, rss.peak)
    finally:
        gateway.stop()
        emulator.stop()


def report(
    args: argparse.Namespace,
    alone: list[float],
    alone_probe: list[float],
    many: list[float],
    probed: list[float],
    elapsed: float,
    idle: int,
    peak: int,
) -> None:
    n = len(many)
    print(
        f"checkpoint store: {args.runs} runs x {args.appends} appends ({n} appends, every {args.big_every}th "
        f"100 KB) in {elapsed:.1f} s: {n / elapsed:.0f} appends/s"
    )
    rows = [
        ("one run alone", alone),
        (f"{args.runs} runs at once", many),
        (f"GET /healthz during {args.runs} runs", probed),
        ("GET /healthz during one run", alone_probe),
    ]
    for name, samples in rows:
        print(
            f"  {name:<36} p50 {ms(samples, 0.5):8.1f} ms  p99 {ms(samples, 0.99):8.1f} ms"
            f"  (n={len(samples)})"
        )
    print(f"  gateway RSS: idle {idle / 2**20:.0f} MiB, peak under load {peak / 2**20:.0f} MiB")
    label = (
        f"append p50 / p99, {args.runs} concurrent runs (2-6 KB entries, every {args.big_every}th "
        "100 KB), Firestore"
    )
    record(
        BENCH,
        label,
        f"{ms(many, 0.5):.1f} / {ms(many, 0.99):.1f} ms",
        baseline=f"one run alone {ms(alone, 0.5):.1f} / {ms(alone, 0.99):.1f} ms",
        ratio=f"{ms(many, 0.5) / ms(alone, 0.5):.2f}x / {ms(many, 0.99) / ms(alone, 0.99):.2f}x",
    )
    record(
        BENCH,
        f"append p50 / p99, {args.runs} concurrent runs, against GET /healthz under the same load",
        f"{ms(many, 0.5):.1f} / {ms(many, 0.99):.1f} ms",
        baseline=f"/healthz {ms(probed, 0.5):.1f} / {ms(probed, 0.99):.1f} ms",
        ratio=f"{ms(many, 0.5) / ms(probed, 0.5):.2f}x / {ms(many, 0.99) / ms(probed, 0.99):.2f}x",
    )
    record(
        BENCH,
        f"gateway peak RSS, {args.runs} runs journaling at once",
        f"{peak / 2**20:.0f} MiB",
        baseline=f"idle {idle / 2**20:.0f} MiB",
        ratio=f"{peak / idle:.2f}x",
    )


if __name__ == "__main__":
    main()
