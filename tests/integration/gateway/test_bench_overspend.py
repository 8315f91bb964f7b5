"""The overspend benchmark's Agentry half, as `make bench` runs it: two gateway processes on one
Firestore emulator, a nearly spent budget, a burst over both; and its row in the generated table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agentry_localcluster.firestore import FirestoreEmulator
from bench import overspend, run_all
from bench.results import RESULTS_ENV, load
from bench.servers import call_cost, start_scripted

pytestmark = pytest.mark.integration


def test_two_gateways_hold_a_nearly_spent_budget_and_the_table_says_so(
    firestore_emulator: FirestoreEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = argparse.Namespace(allowed=20, left=5, burst=24, settle=1.0)
    llm, upstream = start_scripted(tmp_path, 100, 0.0)
    try:
        row = overspend.run_one(
            "agentry (firestore, 2 pods)",
            overspend.agentry_pair(firestore_emulator),
            tmp_path,
            upstream,
            args,
        )
    finally:
        llm.stop()

    served, before, burst_ok = int(str(row["served"])), int(str(row["before"])), int(str(row["burst_ok"]))
    # What the provider answered is what the clients got: the bench's spend is the real one.
    assert served == before + burst_ok + int(str(row["after_ok"]))
    assert served * call_cost() <= call_cost() * args.allowed  # no overspend at all (estimates cover use)
    assert row["over_usd"] == 0
    assert burst_ok >= 1  # the budget left (5 calls' cost) still admits a call of estimate ~3.2 calls
    assert burst_ok < args.burst
    assert "402" in str(row["after"])  # and afterwards it is still enforced

    results = tmp_path / "rows.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(results))
    overspend.report([row], args)
    (recorded,) = load(results)
    assert recorded.met is True and recorded.bench == "overspend"

    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nprose before\n\n{run_all.BEGIN}\nold\n{run_all.END}\n\nprose after\n")
    run_all.write(doc, run_all.table(load(results), {"overspend": (True, 12.0)}))
    text = doc.read_text()
    assert "prose before" in text and "prose after" in text and "\nold\n" not in text
    assert "| overspend | overspend, 24 concurrent calls" in text and "| yes |" in text
