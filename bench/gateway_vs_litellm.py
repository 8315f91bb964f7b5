"""Agentry's gateway and LiteLLM's proxy side by side, in front of the same scripted provider, in the
same run, through the same client, as ratios to calling the provider directly.

    python -m bench.gateway_vs_litellm [--concurrency 1 50 200] [--calls 1000] [--delay 0]

Paths (each its own server process, one worker, as each project ships it):
  direct                      client -> scripted provider (OpenAI wire, streamed)
  agentry memory              Agentry gateway, budgets counted in process, no budget policy
  agentry memory +budget      the same with a daily USD budget on the user (reserve + settle per call)
  agentry firestore +budget   the same budget in Firestore (the emulator): the production ledger
  litellm                     LiteLLM proxy (master key), no budget
  litellm +budget             LiteLLM's deployment budget (max_budget + budget_duration), in process

Per concurrency level (streams started together): time to first token and to the end of the stream,
p50/p99, the added milliseconds over direct; tokens/s through each; peak RSS of each server (its whole
process tree). Budgets are large enough never to refuse: this measures their cost, not their effect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from decimal import Decimal
from pathlib import Path as FsPath

from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import Proc

from . import litellm_env
from .results import record
from .servers import (
    MODEL,
    PRICE_IN,
    PRICE_OUT,
    UPSTREAM_KEY,
    PeakRSS,
    agentry_config,
    run_token,
    start_agentry,
    start_scripted,
)
from .streams import Batches, Path, percentile, rounds

BENCH = "gateway_vs_litellm"
BIG = Decimal("1000000")  # USD: a budget that is checked and charged but never refuses
AGENTRY_BUDGET, LITELLM_BUDGET = "agentry memory +budget", "litellm +budget"
AGENTRY_FIRESTORE = "agentry firestore +budget"


def start_all(work: FsPath, upstream: str, emulator: FirestoreEmulator) -> tuple[list[Proc], dict[str, str]]:
    """Every server; returns them and each path's base URL."""
    procs: list[Proc] = []
    urls: dict[str, str] = {}
    fs_env = {"FIRESTORE_EMULATOR_HOST": emulator.address, "GOOGLE_CLOUD_PROJECT": "bench-side-by-side"}
    for name, budget, ledger, env in (
        ("agentry memory", None, "memory", {}),
        (AGENTRY_BUDGET, BIG, "memory", {}),
        (AGENTRY_FIRESTORE, BIG, "firestore", fs_env),
    ):
        proc, url = start_agentry(
            work,
            name.replace(" ", "-").replace("+", ""),
            agentry_config(upstream, budget),
            {"AGENTRY_GATEWAY_LEDGER": ledger, **env},
        )
        procs.append(proc)
        urls[name] = f"{url}/v1"
    for name, budget in (("litellm", None), (LITELLM_BUDGET, BIG)):
        conf = litellm_env.config(upstream, MODEL, PRICE_IN, PRICE_OUT, budget)
        proc, url = litellm_env.start(work, name.replace(" ", "-").replace("+", ""), conf)
        procs.append(proc)
        urls[name] = f"{url}/v1"
    return procs, urls


def key_for(name: str) -> str:
    if name.startswith("agentry"):
        return run_token()
    if name.startswith("litellm"):
        return litellm_env.MASTER_KEY
    return UPSTREAM_KEY


def print_level(concurrency: int, results: dict[str, Batches]) -> None:
    base = results["direct"].samples
    b_ttft = percentile([s.ttft for s in base], 0.5)
    b50, b99 = percentile([s.total for s in base], 0.5), percentile([s.total for s in base], 0.99)
    print(f"\n{concurrency} concurrent streams ({len(base)} calls per path)")
    print(
        f"  {'path':<27} {'ok':>5} {'ttft p50':>9} {'p50 ms':>8} {'p99 ms':>8} {'+p50':>7} {'+p99':>7}"
        f" {'p50 x':>6} {'p99 x':>6} {'ttft x':>6} {'tok/s':>8}"
    )
    for name, got in results.items():
        totals = [s.total for s in got.samples]
        ttft, p50, p99 = (
            percentile([s.ttft for s in got.samples], 0.5),
            percentile(totals, 0.5),
            percentile(totals, 0.99),
        )
        ok = sum(s.ok for s in got.samples)
        print(
            f"  {name:<27} {ok:>5} {ttft * 1e3:9.2f} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f}"
            f" {(p50 - b50) * 1e3:7.2f} {(p99 - b99) * 1e3:7.2f} {p50 / b50:6.2f} {p99 / b99:6.2f}"
            f" {ttft / b_ttft:6.2f} {got.tokens_per_second:8.0f}"
        )


def record_level(concurrency: int, results: dict[str, Batches]) -> None:
    """Rows for the table: Agentry with budgets against LiteLLM with budgets, as ratios to direct."""
    base = [s.total for s in results["direct"].samples]

    def fig(name: str, q: float) -> float:
        return percentile([s.total for s in results[name].samples], q)

    for q, label in ((0.5, "p50"), (0.99, "p99")):
        direct = percentile(base, q)
        ours, theirs = fig(AGENTRY_BUDGET, q), fig(LITELLM_BUDGET, q)
        record(
            BENCH,
            f"stream {label}, {concurrency} concurrent, budgets on: Agentry (LiteLLM {theirs * 1e3:.1f} ms,"
            f" {theirs / direct:.2f}x)",
            f"{ours * 1e3:.1f} ms",
            baseline=f"direct {direct * 1e3:.1f} ms",
            ratio=f"{ours / direct:.2f}x",
            goal="overhead <= LiteLLM's",
            met=ours - direct <= theirs - direct,
        )
    memory, firestore = fig(AGENTRY_BUDGET, 0.5), fig(AGENTRY_FIRESTORE, 0.5)
    record(
        BENCH,
        f"stream p50, {concurrency} concurrent: Agentry's Firestore ledger over its in-memory one",
        f"{(firestore - memory) * 1e3:+.1f} ms",
        baseline=f"memory ledger {memory * 1e3:.1f} ms",
        ratio=f"{firestore / memory:.2f}x",
        goal="<= +5 ms",
        met=firestore - memory <= 0.005,
    )
    ours_tps, theirs_tps = (
        results[AGENTRY_BUDGET].tokens_per_second,
        results[LITELLM_BUDGET].tokens_per_second,
    )
    direct_tps = results["direct"].tokens_per_second
    record(
        BENCH,
        f"tokens/s, {concurrency} concurrent, budgets on: Agentry (LiteLLM {theirs_tps:.0f}/s)",
        f"{ours_tps:.0f}/s",
        baseline=f"direct {direct_tps:.0f}/s",
        ratio=f"{ours_tps / direct_tps:.2f}x",
        goal=">= LiteLLM's",
        met=ours_tps >= theirs_tps,
    )


def record_memory(peaks: dict[str, int]) -> None:
    mib = {name: peak / 2**20 for name, peak in peaks.items()}
    for name in mib:
        print(f"  peak RSS {name:<27} {mib[name]:7.0f} MiB")
    record(
        BENCH,
        "peak RSS of one gateway instance (process tree), budgets on: Agentry",
        f"{mib[AGENTRY_BUDGET]:.0f} MiB",
        baseline=f"LiteLLM {mib[LITELLM_BUDGET]:.0f} MiB",
        ratio=f"{mib[AGENTRY_BUDGET] / mib[LITELLM_BUDGET]:.2f}x",
        goal="<= LiteLLM's",
        met=mib[AGENTRY_BUDGET] <= mib[LITELLM_BUDGET],
    )


async def measure(urls: dict[str, str], levels: list[int], calls: int, warmup: int) -> None:
    paths = [Path(name, url, key_for(name)) for name, url in urls.items()]
    try:
        await rounds(paths, 1, warmup)
        for concurrency in levels:
            results = await rounds(paths, concurrency, max(3, calls // concurrency))
            failed = {
                n: [s.error or f"HTTP {s.status}" for s in b.samples if not s.ok] for n, b in results.items()
            }
            if any(failed.values()):
                reasons = {n: sorted(set(why)) for n, why in failed.items() if why}
                counts = {n: len(why) for n, why in failed.items() if why}
                raise SystemExit(f"calls failed at {concurrency} streams: {counts}; {reasons}")
            print_level(concurrency, results)
            record_level(concurrency, results)
    finally:
        for p in paths:
            await p.client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_vs_litellm")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--calls", type=int, default=1000, help="calls per path per concurrency level")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0, help="upstream seconds before answering")
    args = parser.parse_args()

    work = FsPath(tempfile.mkdtemp(prefix="agentry-bench-vs-"))
    per_path = args.warmup + sum(max(3, args.calls // c) * c for c in args.concurrency)
    llm, upstream = start_scripted(work, per_path * 6 + 10, args.delay)
    procs: list[Proc] = [llm]
    emulator = FirestoreEmulator(work / "firestore").start()
    try:
        servers, urls = start_all(work, upstream, emulator)
        procs += servers
        names = list(urls)
        print(
            f"side by side: LiteLLM {litellm_env.LITELLM_VERSION}, upstream delay {args.delay * 1e3:.0f} ms"
        )
        with contextlib.ExitStack() as stack:
            samplers = {n: stack.enter_context(PeakRSS(p.pid)) for n, p in zip(names, servers, strict=True)}
            asyncio.run(measure({"direct": upstream, **urls}, args.concurrency, args.calls, args.warmup))
        record_memory({n: s.peak for n, s in samplers.items()})
    finally:
        for proc in reversed(procs):
            proc.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
