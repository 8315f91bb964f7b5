"""The Firestore emulator's listener delivery under writes: what bounds the API's cross-replica push.

    python -m bench.listener_lag [--events 300] [--listeners 3] [--rate 5] [--window 10]

`--listeners` instances of the API's own event listener (services/feed.py: `events` where
`createdAt >= anchor`, re-anchored every `--window` seconds; 0: never) run while events are appended
at `--rate` per second in transactions like `Store.append_event`; the delay from each event's write to
its arrival on the event loop, as a stream's wake-up arrives, p50/p95/max per listener, and how many
never arrived. A diagnostic (not in `make bench`): never re-anchored (`--window 0 --events 450`) the
delay grows with the result set until the emulator falls seconds behind.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.watch import ChangeType

from agentry_api.services.feed import EventFeed
from agentry_localcluster.firestore import FirestoreEmulator

from .api_latency import percentiles

PROJECT = "bench-listener-lag"
PAYLOAD = {"action": "updated", "agent": {"instructions": "x" * 1000}}  # about an agent event's size
NEVER = 3600.0  # a window longer than any run: the listener is never re-anchored


def added_ids(changes: Iterable[Any]) -> set[str]:
    return {str(c.document.id) for c in changes if c.type == ChangeType.ADDED}


class DocumentFeed(EventFeed):
    """The API's event listener, handing on the ids of new documents instead of their users."""

    pick = staticmethod(added_ids)


def write(n: int, db: Any) -> None:
    """An event appended as Store.append_event does: the user's counter and the event together."""
    user = db.collection("users").document(f"user-{n % 50}")

    @firestore.transactional
    def append(transaction: Any) -> None:
        seq = ((user.get(transaction=transaction).to_dict() or {}).get("eventSeq") or 0) + 1
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {"userId": user.id, "seq": seq, "createdAt": created, "data": PAYLOAD}
        transaction.set(db.collection("events").document(f"event-{n}"), event)
        transaction.set(user, {"eventSeq": seq}, merge=True)

    append(db.transaction())


def arrived_at(written: dict[int, float], arrived: dict[int, float], ids: Iterable[str]) -> None:
    now = time.time()
    for doc_id in ids:
        n = int(doc_id.removeprefix("event-"))
        arrived.setdefault(n, now - written[n])


async def run(args: argparse.Namespace) -> list[dict[int, float]]:
    written: dict[int, float] = {}
    arrivals: list[dict[int, float]] = [{} for _ in range(args.listeners)]
    feeds = [
        DocumentFeed(lambda: firestore.Client(project=PROJECT), window=args.window or NEVER)
        for _ in range(args.listeners)
    ]
    loop = asyncio.get_running_loop()
    for feed, arrived in zip(feeds, arrivals, strict=True):
        feed.start(loop, functools.partial(arrived_at, written, arrived))
    try:
        for _ in range(300):  # every listener current before the writes (or 30 s)
            if all(feed.snapshots for feed in feeds):
                break
            await asyncio.sleep(0.1)
        db = firestore.Client(project=PROJECT)
        for n in range(args.events):
            written[n] = time.time()
            await asyncio.to_thread(write, n, db)
            await asyncio.sleep(1 / args.rate)
        await asyncio.sleep(5)
    finally:
        for feed in feeds:
            await asyncio.to_thread(feed.stop)
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listener_lag", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--listeners", type=int, default=3)
    parser.add_argument("--rate", type=float, default=5, help="events written per second")
    parser.add_argument("--window", type=float, default=10, help="re-anchor period, s (0: never)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentry-bench-") as tmp:
        emulator = FirestoreEmulator(Path(tmp) / "firestore").start()
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        try:
            arrivals = asyncio.run(run(args))
        finally:
            emulator.stop()
    every = f"re-anchored every {args.window:g} s" if args.window else "never re-anchored"
    print(f"{args.listeners} listeners, {args.events} events at {args.rate:g}/s, {every}")
    for i, arrived in enumerate(arrivals):
        if not arrived:
            print(f"  listener {i}: nothing arrived")
            continue
        stats, late = percentiles(list(arrived.values())), max(arrived.values()) * 1000
        print(
            f"  listener {i}: {len(arrived)}/{args.events} arrived, p50 {stats['p50']:.0f} ms, "
            f"p95 {stats['p95']:.0f} ms, max {late:.0f} ms"
        )


if __name__ == "__main__":
    main()
