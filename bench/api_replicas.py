"""Two API replicas behind the chart's Service on the local node: reads, and events across replicas.

    python -m bench.api_replicas [--rate 100] [--seconds 60] [--streams 1000] [--events 200]

The local single-node cluster `make dev` starts (needs root; waits for the machine's node if another
run holds it), the chart installed with `api.replicas=2`, the Firestore emulator on the node's
address; the gateway is off (not measured here).

1. Reads: `GET /api/agents/{id}` through the API Service (ClusterIP, kube-proxy) at a fixed rate over
   8 client connections (kube-proxy picks a pod per connection; each pod's share from its /metrics).
   Baseline, same run and rate: the bare Firestore get of the same document from this host, the two
   alternating in slices of 2 s, after 4 s of both unrecorded. 60 s each (20 before): on a node
   started a minute before, a few slow moments that happen to fall in one path's slices can decide
   a p99 of 2,000 samples (1.82x in one make bench, 1.12-1.17x in two runs around it); 6,000 samples
   need three times as many.
2. Events across replicas: `--streams` guests each hold one stream, half on each pod (pod addresses);
   for `--events` of them an agent is updated (`PUT /api/agents/{id}`), alternately through the other
   pod (across replicas: that pod's wake-up datagram, the Firestore listener as the catch-all) and
   through the stream's own (the baseline: a local wake-up); the time from the PUT's start to the
   `agent` event on the stream. Each pod's RSS before and after its streams opened
   (process_resident_memory_bytes of its /metrics) and the wake-ups it received from the other.
   `--no-peer-wake`: the chart's `api.peerWake.enabled=false`, the listener alone across replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import operator
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from google.cloud.firestore import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from agentry_api.auth import SESSION_COOKIE
from agentry_localcluster import localhttp
from agentry_localcluster.cluster import Cluster
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.images import build_images
from agentry_localcluster.install import SYSTEM_NS, Install
from agentry_localcluster.node import NODE_IP

from .api_latency import alternated, cookie_session, line, percentiles, read_json
from .api_streams import Held, guests, open_streams
from .results import record

REPLICAS = 2
API_PORT = 8000  # the chart's api.port
METRICS_PORT = 9090  # the chart's api.metrics.port: the metrics are not on the API's port
CLIENTS = 8  # client connections of the read load
ROUTE = "/api/agents/{agent_id}"
AGENT_SPEC = {"instructions": "Benchmark.", "model": {"name": "claude-sonnet-4-5"}}


def say(msg: str) -> None:
    print(f"[api_replicas] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def chart_stack(workdir: Path, streams: int, peer_wake: bool) -> Iterator[tuple[Install, FirestoreEmulator]]:
    """The local node with the chart's API at REPLICAS replicas; stopped on exit."""
    cluster = Cluster(workdir, owner="python -m bench.api_replicas")
    firestore = FirestoreEmulator(workdir / "firestore", host=NODE_IP)
    try:
        cluster.up(say, build_images(say, ("workspace", "operator", "api")), wait_for_lock=1200)
        firestore.start()
        install = Install(
            cluster,
            firestore.address,
            project=f"bench-{uuid.uuid4().hex[:8]}",
            gateway=False,
            api_env={"AGENTRY_SSE_MAX_CONNECTIONS": str(streams + 100)},
            # every guest of the run comes from this host
            extra_values={
                "api": {"replicas": REPLICAS, "guestMintsPerHour": 10**7, "peerWake": {"enabled": peer_wake}}
            },
        )
        install.install(say)
        yield install, firestore
    finally:
        firestore.stop()
        cluster.down()


def api_pods(install: Install) -> list[str]:
    """Base URLs of the API's ready pods (their own addresses, not the Service's)."""
    result = install.cluster.plane.kubectl(
        "-n", SYSTEM_NS, "get", "pods", "-l", "app.kubernetes.io/component=api", "-o", "json"
    )
    pods = json.loads(result.stdout)["items"]
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
    ]
    return [f"http://{p['status']['podIP']}:{API_PORT}" for p in ready]


def scrape(pod: str) -> dict[str, float]:
    """A pod's RSS, its count of successful agent reads and of wake-ups received, from its /metrics."""
    address = pod.rsplit(":", 1)[0]  # http://<pod IP>
    text = localhttp.get(f"{address}:{METRICS_PORT}/metrics", timeout=10).text
    out = {"rss": 0.0, "reads": 0.0, "wakes": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_resident_memory_bytes":
                out["rss"] = sample.value
            elif sample.name == "agentry_api_peer_wakes_total" and sample.labels.get("outcome") == "received":
                out["wakes"] = sample.value
            elif (
                sample.name == "agentry_api_requests_total"
                and sample.labels.get("route") == ROUTE
                and sample.labels.get("method") == "GET"
                and sample.labels.get("status") == "200"
            ):
                out["reads"] += sample.value
    return out


def signed_in(base: str, cookie: str, **kw: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, cookies={SESSION_COOKIE: cookie}, timeout=30, **kw)  # type: ignore[arg-type]


async def reads(service: str, pods: list[str], args: argparse.Namespace, project: str) -> None:
    async with httpx.AsyncClient(base_url=service, timeout=30) as http:
        [(_, cookie)] = await guests(http, 1)
    async with signed_in(service, cookie) as owner:
        made = await owner.post("/api/agents", json={"name": "Bench read", "spec": AGENT_SPEC})
        made.raise_for_status()
        agent_id = made.json()["id"]
    path = f"/api/agents/{agent_id}"
    # aiohttp, as bench/api_latency.py explains: the client's own work is not the API's
    clients = [cookie_session(service, cookie, connections=4) for _ in range(CLIENTS)]
    db = AsyncClient(project=project)
    try:
        ref = db.collection("agents").document(agent_id)
        for client in clients:  # warm both paths (and open each client's connection)
            for _ in range(5):
                await ref.get()
                await read_json(client, path)
        turn = itertools.cycle(clients)

        async def api_get() -> None:
            await read_json(next(turn), path)

        await alternated((ref.get, api_get), args.rate, 4)  # the first seconds of load, not recorded
        print(f"reads at {args.rate:g} req/s for {args.seconds:g} s each, {REPLICAS} API replicas (Service)")
        before = [scrape(p)["reads"] for p in pods]
        (bare, bare_err), (through, api_err) = await alternated((ref.get, api_get), args.rate, args.seconds)
        share = [scrape(p)["reads"] - b for p, b in zip(pods, before, strict=True)]
    finally:
        for client in clients:
            await client.close()
    b, a = percentiles(bare), percentiles(through)
    line("bare Firestore document.get", b, f"errors {bare_err}")
    line("GET /api/agents/{id} (Service)", a, f"errors {api_err}; per pod {[int(s) for s in share]}")
    for q in ("p50", "p99"):
        record(
            "api_replicas",
            f"GET /api/agents/{{id}} {q} at {args.rate:g} req/s through the Service, {REPLICAS} replicas "
            f"(served {'/'.join(str(int(s)) for s in share)})",
            f"{a[q]:.1f} ms",
            baseline=f"bare Firestore get from the host {b[q]:.1f} ms",
            ratio=f"{a[q] / b[q]:.2f}x",
            goal="<= 1.5x" if q == "p99" else "",
            met=a[q] / b[q] <= 1.5 and api_err == 0 if q == "p99" else None,
        )


def updated_key(text: str) -> int | None:
    """The number in the name of an agent updated by the bench ("Bench 17"), from a data line."""
    if '"updated"' not in text:
        return None
    data = json.loads(text)
    if data.get("kind") != "agent" or data.get("action") != "updated":
        return None
    return int(str(data["agent"]["name"]).rsplit(" ", 1)[-1])


async def events(pods: list[str], args: argparse.Namespace) -> list[str]:
    """Streams held on both pods and agents updated through either; the request ids of failed PUTs."""
    limits = httpx.Limits(max_connections=args.streams + 50, max_keepalive_connections=50)
    timeout = httpx.Timeout(60, read=None)
    https = [httpx.AsyncClient(base_url=p, limits=limits, timeout=timeout) for p in pods]
    held = Held()
    failed: list[str] = []
    try:
        per_pod = [await guests(http, args.streams // len(pods)) for http in https]
        home = {user: i for i, users in enumerate(per_pod) for user, _ in users}
        # the n-th target from pod n % len(pods), so both pods hold streams that get events
        targets = [per_pod[n % len(pods)][n // len(pods)] for n in range(args.events)]
        agents = {}
        for user, cookie in targets:  # created before the streams open: their `created` event is history
            async with signed_in(pods[home[user]], cookie) as c:
                made = await c.post("/api/agents", json={"name": "Bench 0", "spec": AGENT_SPEC})
                made.raise_for_status()
                agents[user] = made.json()["id"]
        rss_before = [scrape(p)["rss"] for p in pods]
        started = time.perf_counter()
        for http, users in zip(https, per_pod, strict=True):
            await open_streams(http, users, key=updated_key, held=held)
        opened = time.perf_counter() - started
        await asyncio.sleep(2)
        rss_after = [scrape(p)["rss"] for p in pods]
        wakes = [scrape(p)["wakes"] for p in pods]
        cross, local, puts = await push(pods, home, targets, agents, held, failed)
        wakes = [scrape(p)["wakes"] - w for p, w in zip(pods, wakes, strict=True)]
    finally:
        for task in held.tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*held.tasks, return_exceptions=True)
        for http in https:
            await http.aclose()
    print(f"wake-up datagrams received while the agents were updated, per pod: {[int(w) for w in wakes]}")
    report_events(args, held, opened, rss_before, rss_after, cross, local, puts)
    return failed


async def push(
    pods: list[str],
    home: dict[str, int],
    targets: list[tuple[str, str]],
    agents: dict[str, str],
    held: Held,
    failed: list[str],
) -> tuple[list[float], list[float], list[float]]:
    """Update each target's agent, alternately through the other pod and the stream's own; the request
    ids of those refused go to `failed`."""
    cross: list[float] = []
    local: list[float] = []
    puts: list[float] = []
    for n, (user, cookie) in enumerate(targets, start=1):
        across = n % 2 == 0
        via = (home[user] + 1) % len(pods) if across else home[user]
        async with signed_in(pods[via], cookie) as c:
            started = time.perf_counter()
            r = await c.put(f"/api/agents/{agents[user]}", json={"name": f"Bench {n}", "spec": AGENT_SPEC})
            puts.append(time.perf_counter() - started)
        if r.is_error:  # counted as not delivered, with its reason (and the pod's log), and the run goes on
            print(f"  PUT {n} through pod {via}: {r.status_code} {r.text[:300]}")
            failed.append(r.headers.get("x-request-id", ""))
            continue
        seen = held.arrivals[user]
        if await held.until(functools.partial(operator.contains, seen, n), 10):
            (cross if across else local).append(seen[n] - started)
    return cross, local, puts


def report_events(
    args: argparse.Namespace,
    held: Held,
    opened: float,
    before: list[float],
    after: list[float],
    cross: list[float],
    local: list[float],
    puts: list[float],
) -> None:
    per_pod = args.streams // len(before)
    print(
        f"SSE: {held.snapshots}/{args.streams} streams got their snapshot in {opened:.1f} s "
        f"(HTTP statuses {held.statuses}); RSS per pod "
        + ", ".join(f"{b / 2**20:.0f} -> {a / 2**20:.0f} MiB" for b, a in zip(before, after, strict=True))
    )
    c, loc, p = percentiles(cross), percentiles(local), percentiles(puts)
    line("event across replicas", c, f"{len(cross)}/{args.events // 2} delivered")
    line("event, same replica", loc, f"{len(local)}/{args.events - args.events // 2} delivered")
    line("PUT /api/agents/{id} itself", p)
    worst = max(a - b for a, b in zip(after, before, strict=True))
    record(
        "api_replicas",
        f"SSE streams held, {per_pod} per replica ({held.snapshots}/{args.streams} got a snapshot; "
        f"HTTP {held.statuses})",
        f"{worst / per_pod / 1024:.0f} KiB per stream (the larger pod)",
        baseline="pod RSS before " + "/".join(f"{b / 2**20:.0f}" for b in before) + " MiB",
        ratio=f"{max(a / b for a, b in zip(after, before, strict=True)):.2f}x RSS",
        goal="bounded memory",
        met=held.snapshots == args.streams,
    )
    for q in ("p50", "p95"):
        record(
            "api_replicas",
            f"agent updated through one replica -> its event on a stream held by the other, {q} "
            f"(from the PUT's start; {len(cross)} events)",
            f"{c[q]:.0f} ms",
            baseline=f"same replica {loc[q]:.0f} ms",
            ratio=f"{c[q] / loc[q]:.2f}x",
            goal="p95 <= 1 s" if q == "p95" else "",
            met=c[q] <= 1000 and len(cross) == args.events // 2 if q == "p95" else None,
        )


async def run(args: argparse.Namespace, install: Install) -> None:
    pods = api_pods(install)
    if len(pods) != REPLICAS:
        raise SystemExit(f"expected {REPLICAS} ready API pods, found {pods}")
    service = f"http://{install.api_service()}"
    await reads(service, pods, args, install.project)
    failed = [ident for ident in await events(pods, args) if ident]
    if not failed:
        return
    logs = install.cluster.plane.kubectl(  # what the failing pods logged of them, read once
        "-n", SYSTEM_NS, "logs", "-l", "app.kubernetes.io/component=api", "--prefix", "--tail=-1", check=False
    ).stdout.splitlines()
    for ident in failed:
        print("\n".join(f"    {line}" for line in logs if ident in line) or f"    ({ident}: not logged)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="reads per second (fixed)")
    parser.add_argument("--seconds", type=float, default=60, help="of reads per path (alternating slices)")
    parser.add_argument("--streams", type=int, default=1000, help="SSE streams held, over both replicas")
    parser.add_argument("--events", type=int, default=200, help="agent updates (half across replicas)")
    parser.add_argument(
        "--no-peer-wake", dest="peer_wake", action="store_false", help="across replicas: the listener alone"
    )
    args = parser.parse_args()
    if args.events > args.streams:  # each update goes to a user of its own, each holding one stream
        parser.error(f"--events ({args.events}) must not exceed --streams ({args.streams})")
    with (
        tempfile.TemporaryDirectory(prefix="agentry-bench-") as tmp,
        chart_stack(Path(tmp), args.streams, args.peer_wake) as (install, firestore),
    ):
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.address  # the baseline's client
        asyncio.run(run(args, install))


if __name__ == "__main__":
    main()
