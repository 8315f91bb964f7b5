"""The Firestore emulator's listener delivery under writes: what bounds the API's cross-replica push.

    python -m bench.listener_lag [--events 300] [--listeners 3] [--rate 5] [--window 10]

`--listeners` listeners run the API's query (`events` where `createdAt >= anchor`, re-anchored every
`--window` seconds as services/feed.py does; 0: never) while events are appended at `--rate` per
second in transactions like `Store.append_event`; the delay from each event's write to each
listener's callback, p50/p95/max, and how many never arrived. A diagnostic (not in `make bench`):
with `--window 60` the delay grows with the result set until the emulator falls seconds behind.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.watch import ChangeType

from agentry_api.services.feed import anchor_iso
from agentry_localcluster.firestore import FirestoreEmulator

from .api_latency import percentiles

PROJECT = "bench-listener-lag"
PAYLOAD = {"action": "updated", "agent": {"instructions": "x" * 1000}}  # about an agent event's size


def listen(arrived: dict[int, float], window: float, stop: threading.Event) -> None:
    """One listener, re-anchored every `window` s; the old one dropped once the new one is current."""
    client: Any = firestore.Client(project=PROJECT)
    watch: Any = None
    while not stop.is_set():
        current = threading.Event()

        def on_snapshot(docs: Any, changes: Any, read_time: Any, current: threading.Event = current) -> None:
            now = time.time()
            for change in changes:
                if change.type == ChangeType.ADDED:
                    event = change.document.to_dict() or {}
                    arrived.setdefault(int(event["n"]), now - float(event["t"]))
            current.set()

        query = client.collection("events").where(
            filter=FieldFilter("createdAt", ">=", anchor_iso(dt.datetime.now(dt.UTC)))
        )
        fresh = query.on_snapshot(on_snapshot)
        current.wait(30)
        if watch is not None:
            watch.unsubscribe()
        watch = fresh
        stop.wait(window or 3600)
    watch.unsubscribe()


def write(n: int, db: Any) -> None:
    """An event appended as Store.append_event does: the user's counter and the event together."""
    user = db.collection("users").document(f"user-{n % 50}")

    @firestore.transactional
    def append(transaction: Any) -> None:
        seq = ((user.get(transaction=transaction).to_dict() or {}).get("eventSeq") or 0) + 1
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "userId": user.id,
            "seq": seq,
            "n": n,
            "t": time.time(),
            "createdAt": created,
            "data": PAYLOAD,
        }
        transaction.set(db.collection("events").document(f"{user.id}-{seq}"), event)
        transaction.set(user, {"eventSeq": seq}, merge=True)

    append(db.transaction())


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
        stop = threading.Event()
        arrivals: list[dict[int, float]] = [{} for _ in range(args.listeners)]
        try:
            for arrived in arrivals:
                threading.Thread(target=listen, args=(arrived, args.window, stop), daemon=True).start()
            time.sleep(2)
            db = firestore.Client(project=PROJECT)
            for n in range(args.events):
                write(n, db)
                time.sleep(1 / args.rate)
            time.sleep(5)
        finally:
            stop.set()
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
