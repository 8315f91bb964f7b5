"""Trigger -> Execution created, as a ratio to a direct `POST /api/agents/{id}/runs` (issue 39).

    python -m bench.run_triggers [--rate 50] [--seconds 20]

One API worker (uvicorn, a subprocess) on a control plane of its own (etcd, kube-apiserver; no
operator: only the creation is timed) and the Firestore emulator. Both paths answer once the Execution
exists in the API server (202), so each request's latency is the time to the Execution created:

1. direct: `POST /api/agents/{id}/runs` with a bearer token (the baseline);
2. trigger: `POST /hooks/{name}`, a GitHub-signed delivery with a new body each time (each starts a
   run) to a trigger of another user: the receiver's own work (the trigger and its key, cached; the
   signature; the rate; the delivery's claim in Firestore) on top of the same run creation.

The direct path also asks Firestore for the user's run counts (the API's quick 429 for the
`concurrent_runs` and `runs_per_day` quotas, two aggregation queries); a trigger's runs leave the
quotas to the operator's run gate alone, so that work is not on the trigger path.

Open loop at `--rate` requests a second, the two paths alternating in slices of 2 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import aiohttp
from google.cloud.firestore import AsyncClient

from agentry_api.auth import SESSION_COOKIE
from agentry_common.triggers import sign_github
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.operator import apply_crds

from .api_latency import (
    alternated,
    cookie_session,
    line,
    percentiles,
    run_with_emulator,
    seed_agent,
    start_api,
)
from .results import record

ADMIN_TOKEN = "bench-admin-token-0123456789"
GOAL = 1.5


def env_of(emulator: FirestoreEmulator, plane: ControlPlane, namespace: str) -> dict[str, str]:
    quotas = {
        f"AGENTRY_{who}QUOTA_{q}": "1000000"
        for who in ("", "GUEST_")
        for q in ("CONCURRENT_RUNS", "RUNS_PER_DAY")
    }
    return {
        "FIRESTORE_EMULATOR_HOST": emulator.address,
        "GOOGLE_CLOUD_PROJECT": "bench-triggers",
        "AGENTRY_KUBECONFIG": str(plane.kubeconfig),
        "AGENTRY_NAMESPACE": namespace,
        "AGENTRY_WATCH": "false",
        "AGENTRY_ADMIN_TOKEN": ADMIN_TOKEN,
        "AGENTRY_GUEST_SESSIONS": "true",  # the trigger's owner: another user than the direct runs'
        "AGENTRY_COOKIE_SECURE": "false",
        "AGENTRY_LOG_LEVEL": "WARNING",
        **quotas,
    }


async def measure(url: str, agent: str, key: str, rate: float, seconds: float) -> None:
    counter = itertools.count()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(
        base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(60)
    ) as s:

        async def direct() -> None:
            async with s.post(f"/api/agents/{agent}/runs", json={"input": "bench"}, headers=auth) as r:
                if r.status != 202:
                    raise RuntimeError(f"run: {r.status} {await r.text()}")

        async def delivery() -> None:
            body = json.dumps({"n": next(counter), "input": "bench"}).encode()
            headers = {"content-type": "application/json", **sign_github(key.encode(), body)}
            async with s.post("/hooks/bench", data=body, headers=headers) as r:
                if r.status != 202:
                    raise RuntimeError(f"hook: {r.status} {await r.text()}")

        for _ in range(20):  # warm both paths (connections, caches)
            await direct()
            await delivery()
        print(f"run creation at {rate:g} req/s for {seconds:g} s each (1 API worker, a control plane)")
        (runs, run_errors), (hooks, hook_errors) = await alternated((direct, delivery), rate, seconds)
    a, b = percentiles(runs), percentiles(hooks)
    line("POST /api/agents/{id}/runs", a, f"errors {run_errors}")
    line("POST /hooks/{trigger}", b, f"errors {hook_errors}")
    for q in ("p50", "p99"):
        ratio = b[q] / a[q]
        print(f"  ratio trigger / direct {q}: {ratio:.2f}x")
        record(
            "run_triggers",
            f"trigger -> Execution created {q} at {rate:g} req/s, 1 worker",
            f"{b[q]:.1f} ms",
            baseline=f"POST /api/agents/{{id}}/runs {a[q]:.1f} ms",
            ratio=f"{ratio:.2f}x",
            goal=f"<= {GOAL}x" if q == "p99" else "",
            met=(ratio <= GOAL and run_errors == 0 and hook_errors == 0) if q == "p99" else None,
        )


async def run(args: argparse.Namespace, emulator: FirestoreEmulator, workdir: Path) -> None:
    plane = ControlPlane(workdir / "kube")
    plane.start()
    try:
        apply_crds(plane)
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        db = AsyncClient(project="bench-triggers")
        await seed_agent(db, "bench-agent", "admin")
        api, url = start_api(env_of(emulator, plane, namespace), workdir / "api.log")
        try:
            # The trigger belongs to a user of its own: its runs never weigh on the direct runs' user
            # (whose run counts the API's quota check reads on each direct run).
            async with aiohttp.ClientSession(base_url=url) as s, s.post("/api/session/guest") as r:
                guest, cookie = (await r.json())["id"], r.cookies[SESSION_COOKIE].value
            await seed_agent(db, "bench-hooked", guest)
            body = {"name": "bench", "agent": "bench-hooked", "rate": {"perMinute": 6000, "burst": 1000}}
            async with cookie_session(url, cookie) as s, s.post("/api/triggers", json=body) as r:
                assert r.status == 201, await r.text()
                key = (await r.json())["secret"]
            await measure(url, "bench-agent", key, args.rate, args.seconds)
        finally:
            api.stop()
    finally:
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_triggers", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50, help="requests per second (fixed, open loop)")
    parser.add_argument("--seconds", type=float, default=20, help="of requests per path (alternating slices)")
    run_with_emulator(run, parser.parse_args())


if __name__ == "__main__":
    main()
