"""Event streams at scale: how many SSE streams one API worker holds, its memory per stream, and how
fast an event written by another process (as another replica's publish is) reaches a held stream.

    python -m bench.api_streams [--streams 2000] [--events 200] [--baseline-streams 200]

1. One API worker (uvicorn, subprocess, Firestore emulator) with the Firestore listener on; N guests
   each open one stream (a guest's quota is 3) and read it continuously; the worker's RSS before and
   after, per stream; /healthz latency while they are held.
2. Push: `--events` events appended to random held users' streams by this process through the same
   `Store.append_event` every replica uses; the time from the append's start to the report's arrival
   on the user's stream, p50/p95/p99.
3. Baseline, same run: the same on a worker with the listener off and the old 2 s poll
   (`--baseline-streams` streams), where events of another replica wait for the poll.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import operator
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from agentry_api.auth import SESSION_COOKIE
from agentry_api.storage import Store, new_client
from agentry_localcluster.firestore import FirestoreEmulator

from .api_latency import api_env, fixed_rate, line, percentiles, run_with_emulator, start_api
from .results import record

PROJECT = "bench-streams"
OPEN_AT_ONCE = 50  # streams being opened concurrently (each takes a lease and reads a snapshot)


@dataclass
class Held:
    """The streams held open by this process: user -> arrival times of report events by payload id."""

    arrivals: dict[str, dict[int, float]] = field(default_factory=dict)
    snapshots: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a snapshot or a report arrived

    async def until(self, done: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
        return done()


async def guests(http: httpx.AsyncClient, n: int) -> list[tuple[str, str]]:
    """n guest users: (user id, session cookie). The client's jar is emptied after each."""
    users = []
    for _ in range(n):
        r = await http.post("/api/session/guest")
        r.raise_for_status()
        users.append((r.json()["id"], r.cookies[SESSION_COOKIE]))
        http.cookies.clear()
    return users


def bench_key(line: str) -> int | None:
    """The number of a `bench` event on a stream's data line (None for any other line)."""
    return int(json.loads(line)["n"]) if '"bench"' in line else None


async def hold(
    http: httpx.AsyncClient,
    user: str,
    cookie: str,
    held: Held,
    opened: asyncio.Event,
    key: Callable[[str], int | None] = bench_key,
) -> None:
    headers = {"Accept": "text/event-stream", "Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with http.stream("GET", "/api/events", headers=headers) as response:
        held.statuses[response.status_code] = held.statuses.get(response.status_code, 0) + 1
        opened.set()
        if response.status_code != 200:
            return
        seen = held.arrivals.setdefault(user, {})
        async for text in response.aiter_lines():
            if text.startswith("event: snapshot"):
                held.snapshots += 1
                held.changed.set()
            elif text.startswith("data: ") and (n := key(text[6:])) is not None:
                seen.setdefault(n, time.perf_counter())  # the first arrival
                held.changed.set()


async def open_streams(
    http: httpx.AsyncClient,
    users: list[tuple[str, str]],
    key: Callable[[str], int | None] = bench_key,
    held: Held | None = None,
) -> Held:
    """Each user holds one stream (added to `held`), back once every open stream has its snapshot."""
    held = held if held is not None else Held()
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(user: str, cookie: str) -> None:
        async with gate:
            opened = asyncio.Event()
            held.tasks.append(asyncio.create_task(hold(http, user, cookie, held, opened, key)))
            await opened.wait()

    await asyncio.gather(*(one(u, c) for u, c in users))
    await held.until(lambda: held.snapshots >= held.statuses.get(200, 0), 120)
    return held


async def push(store: Store, held: Held, events: int) -> list[float]:
    """Append events for random held users, one at a time; the latency of each to its stream."""
    users = [u for u in held.arrivals]
    latencies = []
    for n in range(events):
        user = random.choice(users)
        started = time.perf_counter()
        await store.append_event(user, "bench", {"n": n})
        seen = held.arrivals[user]
        if await held.until(functools.partial(operator.contains, seen, n), 10):
            latencies.append(seen[n] - started)
    return latencies


@dataclass
class Measured:
    held: Held
    opened: float  # seconds to open every stream
    rss_before: int
    rss_after: int
    health: dict[str, float]
    health_err: int
    latencies: list[float]


async def measure(url: str, pid: int, streams: int, events: int) -> Measured:
    limits = httpx.Limits(max_connections=streams + 50, max_keepalive_connections=50)
    timeout = httpx.Timeout(60, read=None)
    store = Store(new_client(PROJECT))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as http:
        users = await guests(http, streams)
        proc = psutil.Process(pid)
        rss_before = proc.memory_info().rss
        started = time.perf_counter()
        held = await open_streams(http, users)
        opened = time.perf_counter() - started
        await asyncio.sleep(2)
        rss_after = proc.memory_info().rss
        health, health_err = await fixed_rate(lambda: http.get("/healthz"), 20, 3)
        latencies = await push(store, held, events)
        for task in held.tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*held.tasks, return_exceptions=True)
    await store.close()
    return Measured(held, opened, rss_before, rss_after, percentiles(health), health_err, latencies)


def report_held(m: Measured, streams: int) -> None:
    held, before, after = m.held, m.rss_before, m.rss_after
    per = (after - before) / max(1, streams) / 1024
    print(
        f"SSE: {held.snapshots}/{streams} streams got their snapshot in {m.opened:.1f} s on one worker "
        f"(HTTP statuses {held.statuses}); RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    )
    line("/healthz while held", m.health, f"errors {m.health_err}")
    record(
        "api_streams",
        f"SSE streams held by one API worker ({held.snapshots}/{streams} got a snapshot; "
        f"HTTP {held.statuses})",
        f"{per:.0f} KiB per stream",
        baseline=f"worker RSS before {before / 2**20:.0f} MiB",
        ratio=f"{after / before:.2f}x RSS",
        goal=f"{streams} streams, bounded memory",
        met=held.snapshots == streams,
    )


async def run(args: argparse.Namespace, emulator: FirestoreEmulator, workdir: Path) -> None:
    results: dict[str, Measured] = {}
    modes = {
        "listener": ({"AGENTRY_SSE_LISTEN": "true"}, args.streams),
        "poll": ({"AGENTRY_SSE_LISTEN": "false", "AGENTRY_SSE_POLL_SECONDS": "2"}, args.baseline_streams),
    }
    for mode, (extra, streams) in modes.items():
        env = api_env(
            emulator,
            PROJECT,
            workdir,
            AGENTRY_SSE_MAX_CONNECTIONS=str(streams + 100),
            AGENTRY_GUEST_MINTS_PER_HOUR="1000000",  # every guest of the run is from 127.0.0.1
            **extra,
        )
        api, url = start_api(env, workdir / f"api-{mode}.log")
        try:
            print(f"[{mode}] {streams} streams, {args.events} events pushed")
            m = await measure(url, api.pid, streams, args.events)
        finally:
            api.stop()
        if mode == "listener":
            report_held(m, streams)
        results[mode] = m
    got = {mode: percentiles(m.latencies) for mode, m in results.items()}
    for mode, stats in got.items():
        delivered = len(results[mode].latencies)
        line(f"event -> stream ({mode})", stats, f"{delivered}/{args.events} delivered")
    fast, slow = got["listener"], got["poll"]
    for q in ("p50", "p95"):
        record(
            "api_streams",
            f"an event written by another process to a held stream, {q} ({args.streams} streams held)",
            f"{fast[q]:.0f} ms",
            baseline=f"poll every 2 s ({args.baseline_streams} streams) {slow[q]:.0f} ms",
            ratio=f"{fast[q] / slow[q]:.2f}x",
            goal="p95 <= 1 s" if q == "p95" else "",
            met=fast[q] <= 1000 if q == "p95" else None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_streams", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2000, help="SSE streams held on one worker")
    parser.add_argument("--events", type=int, default=200, help="events pushed to held streams")
    parser.add_argument("--baseline-streams", type=int, default=200, help="streams of the poll baseline")
    run_with_emulator(run, parser.parse_args())


if __name__ == "__main__":
    main()
