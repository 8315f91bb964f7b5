"""API read latency against the Firestore emulator, as a ratio to the bare Firestore client call
(event streams: bench/api_streams.py).

    python -m bench.api_latency [--rate 100] [--seconds 20]

1. Bare client: `document.get()` of one agent, at a fixed request rate (open loop), p50/p95/p99.
2. API: `GET /api/agents/{id}` (cookie session, one Firestore read) for the same document, at the
   same rate, against one uvicorn worker in a subprocess; printed as a ratio to (1). The two
   alternate in slices of 2 s, so the machine's drift falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
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


ROUND = 2.0  # seconds of one path's calls before the other's turn (alternated)


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


async def alternated(
    bare_get: Callable[[], Awaitable[Any]], api_get: Callable[[], Awaitable[Any]], rate: float, seconds: float
) -> tuple[list[float], list[float], int, int]:
    """Both paths at `rate` for `seconds` each, in alternating slices of ROUND seconds: the machine's
    drift (a busy neighbour, a collection) falls on both alike instead of on whichever ran second."""
    bare: list[float] = []
    through: list[float] = []
    errors = [0, 0]
    for _ in range(max(1, round(seconds / ROUND))):
        for i, (call, into) in enumerate(((bare_get, bare), (api_get, through))):
            got, failed = await fixed_rate(call, rate, ROUND)
            into.extend(got)
            errors[i] += failed
    return bare, through, errors[0], errors[1]


def line(name: str, stats: dict[str, float], extra: str = "") -> None:
    print(
        f"  {name:<28} p50 {stats['p50']:7.2f} ms   p95 {stats['p95']:7.2f} ms   "
        f"p99 {stats['p99']:7.2f} ms {extra}"
    )


def api_env(emulator: FirestoreEmulator, project: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's API worker: no cluster (reads and streams only)."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return {
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "GOOGLE_CLOUD_PROJECT": project,
        "AGENTRY_KUBECONFIG": str(kubeconfig),
        "AGENTRY_WATCH": "false",
        "AGENTRY_GUEST_SESSIONS": "true",  # the bench signs in as a guest over plain http
        "AGENTRY_COOKIE_SECURE": "false",
        "AGENTRY_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_api(env: dict[str, str], log: Path) -> tuple[Proc, str]:
    """One uvicorn worker of the API in a subprocess; returns it and its base URL."""
    argv = [sys.executable, "-m", "uvicorn", "agentry_api.main:create_app", "--factory"]
    # uvicorn binds port 0 and logs the port it got (an info line)
    argv += ["--port", "0", "--log-level", "info", "--no-access-log"]
    api = Proc("agentry-api", argv, log, env=env).start()
    try:
        port = int(api.wait_for_log(UVICORN_SERVING, 60, "serving").group(1))
        url = f"http://127.0.0.1:{port}"
        api.wait_ready(lambda: httpx.get(f"{url}/healthz", timeout=1).is_success, 60, "serving")
    except BaseException:
        api.stop()
        raise
    return api, url


async def run(args: argparse.Namespace, emulator: FirestoreEmulator, workdir: Path) -> None:
    project = "bench-api"
    db = AsyncClient(project=project)
    agent_id = "bench-agent-x1"
    api, url = start_api(api_env(emulator, project, workdir), workdir / "api.log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
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
                f"read latency at {args.rate:g} req/s for {args.seconds:g} s each "
                "(Firestore emulator, 1 API worker)"
            )

            async def api_get() -> None:
                r = await http.get(f"/api/agents/{agent_id}")
                r.raise_for_status()

            bare, through, bare_err, api_err = await alternated(ref.get, api_get, args.rate, args.seconds)
            b, a = percentiles(bare), percentiles(through)
            line("bare Firestore document.get", b, f"errors {bare_err}")
            line("GET /api/agents/{id}", a, f"errors {api_err}")
            print(
                f"  ratio API / bare: p50 {a['p50'] / b['p50']:.2f}x   p95 {a['p95'] / b['p95']:.2f}x"
                f"   p99 {a['p99'] / b['p99']:.2f}x"
            )
            for q in ("p50", "p95", "p99"):
                record(
                    "api_latency",
                    f"GET /api/agents/{{id}} {q} at {args.rate:g} req/s, 1 worker",
                    f"{a[q]:.1f} ms",
                    baseline=f"bare Firestore get {b[q]:.1f} ms",
                    ratio=f"{a[q] / b[q]:.2f}x",
                    goal="<= 1.5x" if q == "p99" else "",
                    met=a[q] / b[q] <= 1.5 if q == "p99" else None,
                )
    finally:
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="requests per second (fixed)")
    parser.add_argument("--seconds", type=float, default=20, help="of reads per path (alternating slices)")
    run_with_emulator(run, parser.parse_args())


def run_with_emulator(
    body: Callable[[argparse.Namespace, FirestoreEmulator, Path], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
) -> None:
    """Run a benchmark's async body against a Firestore emulator of its own, in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="agentry-bench-") as tmp:
        workdir = Path(tmp)
        emulator = FirestoreEmulator(workdir / "firestore").start()
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        try:
            asyncio.run(body(args, emulator, workdir))
        finally:
            emulator.stop()
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)


if __name__ == "__main__":
    main()
