"""API read latency against the Firestore emulator, as a ratio to the bare Firestore client call;
and how many SSE connections one API worker holds.

    python -m bench.api_latency [--rate 50] [--seconds 10] [--sse 200]

1. Bare client: `document.get()` of one agent, at a fixed request rate (open loop), p50/p95/p99.
2. API: `GET /api/agents/{id}` (cookie session, one Firestore read) for the same document, at the
   same rate, against one uvicorn worker in a subprocess; printed as a ratio to (1).
3. SSE: N event streams opened on that worker; each must receive its snapshot; then the worker's
   RSS per stream and the latency of /healthz while they are held.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from google.cloud.firestore import AsyncClient

from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import UVICORN_SERVING, Proc

from .results import record

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "mean": statistics.fmean(ordered) * 1000}


async def fixed_rate(
    call: Callable[[], Awaitable[Any]], rate: float, seconds: float
) -> tuple[list[float], int]:
    """Start one call every 1/rate seconds whatever the previous ones do (open loop)."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            await call()
        except Exception:
            errors += 1
            return
        latencies.append(time.perf_counter() - started)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies, errors


def line(name: str, stats: dict[str, float], extra: str = "") -> None:
    print(
        f"  {name:<28} p50 {stats['p50']:7.2f} ms   p95 {stats['p95']:7.2f} ms   "
        f"p99 {stats['p99']:7.2f} ms {extra}"
    )


async def run(args: argparse.Namespace, emulator: FirestoreEmulator, workdir: Path) -> None:
    project = "bench-api"
    db = AsyncClient(project=project)
    agent_id = "bench-agent-x1"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    env = {
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "GOOGLE_CLOUD_PROJECT": project,
        "AGENTRY_KUBECONFIG": str(kubeconfig),
        "AGENTRY_WATCH": "false",
        "AGENTRY_GUEST_SESSIONS": "true",  # the bench signs in as a guest over plain http
        "AGENTRY_COOKIE_SECURE": "false",
        "AGENTRY_SSE_MAX_CONNECTIONS": str(args.sse + 100),
        "AGENTRY_LOG_LEVEL": "WARNING",
    }
    api = Proc(
        "agentry-api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "agentry_api.main:create_app",
            "--factory",
            "--port",
            "0",  # uvicorn binds port 0 and logs the port it got (an info line)
            "--log-level",
            "info",
            "--no-access-log",
        ],
        workdir / "api.log",
        env=env,
    ).start()
    try:
        serving = api.wait_for_log(UVICORN_SERVING, 60, "serving")
        port = int(serving.group(1))
        api.wait_ready(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success, 60, "serving"
        )
        limits = httpx.Limits(max_connections=args.sse + 200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
            user = (await http.post("/api/session/guest")).json()["id"]
            now = "2026-01-01T00:00:00.000000Z"
            await (
                db.collection("agents")
                .document(agent_id)
                .set(
                    {
                        "id": agent_id,
                        "userId": user,
                        "source": "api",
                        "name": "Bench",
                        "deleted": False,
                        "spec": {"instructions": "x", "model": {"name": "m"}},
                        "status": {},
                        "sync": {"state": "Synced", "message": "", "attempts": 1},
                        "createdAt": now,
                        "updatedAt": now,
                    }
                )
            )
            ref = db.collection("agents").document(agent_id)
            assert (await http.get(f"/api/agents/{agent_id}")).status_code == 200
            for _ in range(20):  # warm both paths
                await ref.get()
                await http.get(f"/api/agents/{agent_id}")

            print(
                f"read latency at {args.rate:g} req/s for {args.seconds:g} s "
                "(Firestore emulator, 1 API worker)"
            )
            bare, bare_err = await fixed_rate(ref.get, args.rate, args.seconds)

            async def api_get() -> None:
                r = await http.get(f"/api/agents/{agent_id}")
                r.raise_for_status()

            through, api_err = await fixed_rate(api_get, args.rate, args.seconds)
            b, a = percentiles(bare), percentiles(through)
            line("bare Firestore document.get", b, f"errors {bare_err}")
            line("GET /api/agents/{id}", a, f"errors {api_err}")
            print(f"  ratio API / bare: p50 {a['p50'] / b['p50']:.2f}x   p95 {a['p95'] / b['p95']:.2f}x")
            for q in ("p50", "p95"):
                record(
                    "api_latency",
                    f"GET /api/agents/{{id}} {q} at {args.rate:g} req/s, 1 worker",
                    f"{a[q]:.1f} ms",
                    baseline=f"bare Firestore get {b[q]:.1f} ms",
                    ratio=f"{a[q] / b[q]:.2f}x",
                )

            proc = psutil.Process(api.pid)
            rss_before = proc.memory_info().rss
            streams: list[Any] = []
            snapshots = 0

            statuses: dict[int, int] = {}

            async def open_stream() -> None:
                nonlocal snapshots
                cm = http.stream("GET", "/api/events", headers={"Accept": "text/event-stream"})
                response = await cm.__aenter__()
                streams.append((cm, response))
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code != 200:
                    return
                async for text in response.aiter_lines():
                    if text.startswith("event: snapshot"):
                        snapshots += 1
                        return

            started = time.perf_counter()
            await asyncio.gather(*(open_stream() for _ in range(args.sse)))
            opened = time.perf_counter() - started
            await asyncio.sleep(2)
            rss_after = proc.memory_info().rss
            health, health_err = await fixed_rate(lambda: http.get("/healthz"), 20, 3)
            print(
                f"SSE: {snapshots}/{args.sse} streams got their snapshot in {opened:.1f} s on one worker "
                f"(HTTP statuses {statuses})"
            )
            print(
                f"  worker RSS {rss_before / 2**20:.0f} MiB -> {rss_after / 2**20:.0f} MiB "
                f"({(rss_after - rss_before) / max(1, args.sse) / 1024:.0f} KiB per stream)"
            )
            line("/healthz while held", percentiles(health), f"errors {health_err}")
            record(
                "api_latency",
                f"SSE streams held by one API worker, RSS per stream ({snapshots}/{args.sse} got a snapshot;"
                f" HTTP {statuses})",
                f"{(rss_after - rss_before) / max(1, args.sse) / 1024:.0f} KiB",
                baseline=f"worker RSS before {rss_before / 2**20:.0f} MiB",
                goal="every stream gets its snapshot",
                met=snapshots == args.sse,
            )
            for cm, _ in streams:
                await cm.__aexit__(None, None, None)
    finally:
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50, help="requests per second (fixed)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sse", type=int, default=200, help="SSE connections to hold on one worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentry-bench-") as tmp:
        workdir = Path(tmp)
        emulator = FirestoreEmulator(workdir / "firestore").start()
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        try:
            asyncio.run(run(args, emulator, workdir))
        finally:
            emulator.stop()
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


if __name__ == "__main__":
    main()
