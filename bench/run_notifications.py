"""Notification fan-out: run-end events delivered to webhook sinks through the API's outbox.

    python -m bench.run_notifications [--events 1000] [--sinks 10]

On Google's Firestore emulator, the API's own parts (services/notifications: the outbox and the
dispatcher, as a replica runs them) fan `--events` run-end events out to `--sinks` webhook
subscriptions, each a real local HTTP server that answers 200. Reported: the delivery lag (from the
event's record to its arrival at the sink) p50/p99 against the baseline of one direct POST to the same
receiver, and the memory the process held at its peak against the same process idle (RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from agentry_api.services.notifications import Notifications
from agentry_api.services.notifications.sinks import Sink
from agentry_api.services.workflows import WorkflowService
from agentry_api.settings import Settings
from agentry_api.storage import Store, new_client, now_iso
from agentry_localcluster.firestore import FirestoreEmulator
from tests.fixtures.notify_receiver import Receiver

from .api_latency import percentiles
from .results import record

PROJECT = "bench-notifications"
USER = "bench-user"


def parse(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def direct(url: str, n: int) -> list[float]:
    """The baseline: one POST straight to a receiver, timed to its arrival there."""
    receiver_lags: list[float] = []
    async with httpx.AsyncClient() as client:
        for _ in range(n):
            started = time.time()
            r = await client.post(url, content=b"{}")
            r.raise_for_status()
            receiver_lags.append(time.time() - started)
    return receiver_lags


async def subscribe(notify: Notifications, store: Store, receivers: list[Receiver]) -> None:
    for i, receiver in enumerate(receivers):
        sub_id = f"sub-bench{i}"
        sink = notify.subscriptions.cipher.seal(sub_id, Sink(receiver.url, "whsec_" + "QUFB" * 11))
        now = now_iso()
        doc: dict[str, Any] = {
            "id": sub_id,
            "userId": USER,
            "name": f"sink {i}",
            "sinkKind": "webhook",
            "sink": sink,
        }
        doc |= {"urlHint": "", "events": [], "scope": {"kind": "user"}, "everyone": False, "enabled": True}
        await store.put_subscription(doc | {"createdAt": now, "updatedAt": now})


async def fan_out(args: argparse.Namespace, receivers: list[Receiver]) -> tuple[float, int, int]:
    settings = Settings(notify_allowed_hosts=["127.0.0.1"], notify_poll_seconds=0.1, session_secret="b" * 32)
    store = Store(new_client(PROJECT))
    notify = Notifications.of(store, settings, WorkflowService(store, None, settings), "b" * 32)  # type: ignore[arg-type]
    await subscribe(notify, store, receivers)
    notify.dispatcher.start()
    await asyncio.sleep(2)
    me = psutil.Process()
    idle = peak = me.memory_info().rss
    expected = args.events * len(receivers)
    started = time.monotonic()

    async def sample() -> None:  # this process only (the emulator is a child: not counted)
        nonlocal peak
        while True:
            peak = max(peak, me.memory_info().rss)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        for i in range(args.events):
            data = {"action": "status", "execution": f"run-{i}", "agentId": "nightly", "phase": "Succeeded"}
            await notify.outbox.from_bus(USER, "execution", data | {"createdAt": now_iso()})
        while sum(len(r.received) for r in receivers) < expected:
            if time.monotonic() - started > args.timeout:
                raise SystemExit(f"only {sum(len(r.received) for r in receivers)} of {expected} delivered")
            await asyncio.sleep(0.2)
    finally:
        sampler.cancel()
    took = time.monotonic() - started
    await notify.dispatcher.stop()
    await store.close()
    return took, idle, peak


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_notifications")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--sinks", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-notify-"))
    emulator = FirestoreEmulator(work / "firestore").start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
    receivers = [Receiver() for _ in range(args.sinks)]
    try:
        baseline = percentiles(asyncio.run(direct(receivers[0].url, 200)))
        receivers[0].received.clear()
        took, idle, peak = asyncio.run(fan_out(args, receivers))
        lags = [r.at - parse(r.json()["occurredAt"]) for x in receivers for r in x.received]
        duplicates = sum(
            len(x.received) - len({r.headers["webhook-id"] for r in x.received}) for x in receivers
        )
        report(args, percentiles(lags), baseline, took, idle, peak, duplicates)
    finally:
        for receiver in receivers:
            receiver.close()
        emulator.stop()


def report(
    args: argparse.Namespace,
    lag: dict[str, float],
    baseline: dict[str, float],
    took: float,
    idle: int,
    peak: int,
    duplicates: int,
) -> None:
    n = args.events * args.sinks
    print(
        f"notifications: {args.events} run-end events x {args.sinks} sinks = {n} deliveries in {took:.1f} s "
        f"({n / took:.0f}/s), {duplicates} duplicates"
    )
    print(f"  delivery lag   p50 {lag['p50']:9.1f} ms  p99 {lag['p99']:9.1f} ms")
    print(f"  direct POST    p50 {baseline['p50']:9.1f} ms  p99 {baseline['p99']:9.1f} ms")
    print(f"  process RSS: idle {idle / 2**20:.0f} MiB, peak during the fan-out {peak / 2**20:.0f} MiB")
    what = f"{args.events} run-end events to {args.sinks} webhook sinks ({n} deliveries, Firestore emulator)"
    record(
        "run_notifications",
        f"delivery lag p99, {what}",
        f"{lag['p99']:.0f} ms",
        baseline=f"{baseline['p99']:.1f} ms (one direct POST, p99)",
        ratio=f"{lag['p99'] / baseline['p99']:.0f}x",
    )
    record(
        "run_notifications",
        f"memory held at peak, {what}",
        f"{peak / 2**20:.0f} MiB",
        baseline=f"{idle / 2**20:.0f} MiB (the same process idle)",
        ratio=f"{peak / idle:.2f}x",
    )
    record("run_notifications", f"deliveries per second, {what}", f"{n / took:.0f}/s")


if __name__ == "__main__":
    main()
