"""The Firestore emulator's CPU for one fixed workload, with the JVM flags the test bed starts it with
(C1 only) against the JVM's default tiered compilation, in the same run.

    python -m bench.emulator_cpu [--rounds 2]

Each round starts a fresh emulator of each kind, alternately, and drives it with the Python client as
the API does: 1,500 document writes, 1,500 reads, 100 queries and 300 read-modify-write
transactions. Its CPU is the JVM process's user + system time from its start to the workload's end
(compiler and GC threads included), read from /proc; its wall time is the workload's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_localcluster.firestore import JVM_FLAGS, FirestoreEmulator

from .results import record

DEFAULT_JIT = ("-Xms64m",)
DOCS, QUERIES, TRANSACTIONS = 1500, 100, 300
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def workload(db: firestore.Client) -> None:
    runs = db.collection("runs")
    for i in range(DOCS):
        runs.document(f"r{i}").set({"i": i, "owner": f"u{i % 7}", "summary": "x" * 200})
    for i in range(DOCS):
        runs.document(f"r{i}").get()
    for k in range(QUERIES):
        list(runs.where(filter=FieldFilter("owner", "==", f"u{k % 7}")).limit(20).stream())
    for i in range(TRANSACTIONS):
        ref = runs.document(f"r{i}")

        @firestore.transactional
        def bump(transaction: firestore.Transaction, ref: firestore.DocumentReference = ref) -> None:
            snap = ref.get(transaction=transaction)
            transaction.update(ref, {"i": snap.get("i") + 1})

        bump(db.transaction())


def one(flags: tuple[str, ...]) -> tuple[float, float]:
    """The emulator's CPU seconds (start to the workload's end) and the workload's wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        emulator = FirestoreEmulator(Path(tmp), jvm_flags=flags).start()
        try:
            assert emulator.proc is not None and emulator.proc.popen is not None
            os.environ.update(emulator.env())  # the client's emulator mode: no credentials
            db = firestore.Client(project="bench")
            started = time.perf_counter()
            workload(db)
            wall = time.perf_counter() - started
            return cpu_seconds(emulator.proc.popen.pid), wall
        finally:
            emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    samples: dict[tuple[str, ...], list[tuple[float, float]]] = {JVM_FLAGS: [], DEFAULT_JIT: []}
    for _ in range(args.rounds):
        for flags in (DEFAULT_JIT, JVM_FLAGS):
            samples[flags].append(one(flags))
    cpu = {f: statistics.median(c for c, _ in s) for f, s in samples.items()}
    wall = {f: statistics.median(w for _, w in s) for f, s in samples.items()}
    print(f"emulator CPU: C1 only {cpu[JVM_FLAGS]:.1f} s, default JIT {cpu[DEFAULT_JIT]:.1f} s")
    print(f"workload wall: C1 only {wall[JVM_FLAGS]:.1f} s, default JIT {wall[DEFAULT_JIT]:.1f} s")
    record(
        "emulator_cpu",
        "the Firestore emulator's CPU for a fixed workload, C1 only (as the test bed starts it)",
        f"{cpu[JVM_FLAGS]:.1f} s",
        baseline=f"default JIT {cpu[DEFAULT_JIT]:.1f} s",
        ratio=f"{cpu[JVM_FLAGS] / cpu[DEFAULT_JIT]:.2f}x",
    )
    record(
        "emulator_cpu",
        "the same workload's wall time, C1 only",
        f"{wall[JVM_FLAGS]:.1f} s",
        baseline=f"default JIT {wall[DEFAULT_JIT]:.1f} s",
        ratio=f"{wall[JVM_FLAGS] / wall[DEFAULT_JIT]:.2f}x",
    )


if __name__ == "__main__":
    main()
