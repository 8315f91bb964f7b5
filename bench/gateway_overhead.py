"""Gateway overhead per call, as a ratio to calling the scripted provider directly, in the same run.

    python -m bench.gateway_overhead [--calls 300] [--no-firestore] [--delay 0]

Three processes: the scripted LLM server, the gateway (uvicorn, `python -m agentry_gateway`) and
this client, which calls like the runtime does (the provider layer, Anthropic wire, streaming).
Rounds alternate the paths, so drift on a shared machine hits all of them alike:

1. direct:            client -> scripted provider
2. gateway (memory):  client -> gateway -> scripted provider; budgets counted in process
3. gateway (firestore): the same with budget reservations and settlements in the Firestore
   emulator (a policy applies to the user, so every call reserves in a transaction)

Printed: p50/p99 per path, the ratio to (1), the added milliseconds, and the gateway's own
overhead histogram (time not spent waiting for the upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agentry_common.models import ModelRef
from agentry_common.tokens import Keyring, mint_run_token, mint_service_token
from agentry_llm import ChatProvider, ChatRequest, Message, TextBlock, build_provider
from agentry_localcluster import localhttp
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.procs import UVICORN_SERVING, Proc

from .results import record

MODEL = "claude-sonnet-4-6"
KEY = "b" * 40
ANSWER = {
    "text": "A short answer of a few words, streamed in chunks.",
    "usage": {"input_tokens": 50, "output_tokens": 12},
}
REQUEST = ChatRequest(
    system="You are a benchmark.",
    messages=[Message(role="user", content=[TextBlock(text="Say something short.")])],
    max_tokens=64,
)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "mean": statistics.fmean(ordered) * 1000}


def provider(base_url: str, key: str) -> ChatProvider:
    ref = ModelRef.model_validate({"provider": "anthropic", "name": MODEL, "baseURL": base_url})
    return build_provider(ref, {"ANTHROPIC_API_KEY": key}, timeout=30)


async def one(p: ChatProvider) -> float:
    started = time.perf_counter()
    await p.complete(REQUEST, on_text=lambda _: None)
    return time.perf_counter() - started


# uvicorn's line once it serves; with port 0 it names the port the kernel gave it.


def start_gateway(work: Path, name: str, llm_url: str, ledger: str, env: dict[str, str]) -> tuple[Proc, str]:
    config = {
        "channels": [
            {"name": "anthropic", "protocol": "anthropic", "baseURL": llm_url, "apiKeyEnv": "BENCH_KEY"}
        ],
        "budgets": [{"name": "bench", "scope": "user", "limits": [{"window": "5h", "tokens": 10**12}]}],
    }
    config_file = work / f"{name}.json"  # YAML is a superset of JSON
    config_file.write_text(json.dumps(config))
    proc = Proc(
        f"gateway-{name}",
        [sys.executable, "-m", "agentry_gateway"],
        work / f"{name}.log",
        env={
            "AGENTRY_GATEWAY_PORT": "0",  # it binds port 0 and logs the port it got
            "AGENTRY_GATEWAY_HOST": "127.0.0.1",
            "AGENTRY_GATEWAY_CONFIG_FILE": str(config_file),
            "AGENTRY_GATEWAY_LEDGER": ledger,
            "AGENTRY_TOKEN_KEYS": f"bench:{KEY}",
            "BENCH_KEY": "sk-ant-bench-0123456789",
            **env,
        },
    ).start()
    port = int(proc.wait_for_log(UVICORN_SERVING, 60, "serving").group(1))
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: localhttp.get(f"{url}/readyz").status_code == 200, 60, "ready")
    return proc, url


def overhead_histogram(url: str) -> dict[str, float]:
    """p50/p99 of the gateway's own time (agentry_gateway_overhead_seconds), from /metrics."""
    buckets: list[tuple[float, float]] = []
    token = mint_service_token(Keyring.single(KEY, "bench"), "bench")  # /metrics is for service tokens
    for line in localhttp.get(
        f"{url}/metrics", headers={"authorization": f"Bearer {token}"}
    ).text.splitlines():
        if line.startswith("agentry_gateway_overhead_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0

    def at(q: float) -> float:
        for le, count in buckets:
            if count >= q * total:
                return le * 1000
        return float("nan")

    return {"p50<=": at(0.5), "p99<=": at(0.99), "calls": total}


async def measure(paths: dict[str, ChatProvider], calls: int, warmup: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(warmup + calls):
        for name, p in paths.items():
            elapsed = await one(p)
            if i >= warmup:
                samples[name].append(elapsed)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_overhead")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-firestore", action="store_true", help="skip the Firestore-ledger path")
    parser.add_argument("--delay", type=float, default=0.0, help="upstream seconds per answer (model time)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agentry-bench-gw-"))
    paths_n = 2 if args.no_firestore else 3
    items = [{**ANSWER, "delay": args.delay, "repeat": (args.calls + args.warmup) * paths_n + 10}]
    script = work / "script.json"
    script.write_text(json.dumps(items))
    llm = Proc(
        "scripted-llm",
        [
            sys.executable,
            "-m",
            "agentry_testing.scripted_llm",
            "--port",
            "0",  # it binds port 0 and prints the port it got
            "--script",
            str(script),
        ],
        work / "llm.log",
    ).start()
    procs: list[Proc] = [llm]
    emulator: FirestoreEmulator | None = None
    try:
        llm_port = int(
            llm.wait_for_log(r"scripted LLM listening on http://[^:]+:(\d+)", 30, "listening").group(1)
        )
        llm_url = f"http://127.0.0.1:{llm_port}"
        llm.wait_ready(lambda: localhttp.get(f"{llm_url}/healthz").status_code == 200, 30, "ready")
        memory, memory_url = start_gateway(work, "memory", llm_url, "memory", {})
        procs.append(memory)
        urls = {"gateway (memory ledger)": memory_url}
        if not args.no_firestore:
            emulator = FirestoreEmulator(work / "firestore").start()
            fs, fs_url = start_gateway(
                work,
                "firestore",
                llm_url,
                "firestore",
                {"FIRESTORE_EMULATOR_HOST": emulator.address, "GOOGLE_CLOUD_PROJECT": "bench"},
            )
            procs.append(fs)
            urls["gateway (firestore ledger)"] = fs_url
        token = mint_run_token(
            Keyring.single(KEY, "bench"),
            namespace="bench",
            execution="ex",
            agent="a",
            active_deadline_seconds=3600,
        )
        paths: dict[str, ChatProvider] = {"direct": provider(llm_url, "sk-ant-bench-0123456789")}
        for name, url in urls.items():
            paths[name] = provider(url, token)

        async def run() -> dict[str, list[float]]:
            try:
                return await measure(paths, args.calls, args.warmup)
            finally:
                for p in paths.values():
                    await p.aclose()

        samples = asyncio.run(run())
        base = percentiles(samples["direct"])
        print(
            f"gateway overhead per call: {args.calls} streamed calls per path, alternating, upstream delay "
            f"{args.delay * 1000:.0f} ms"
        )
        print(
            f"  {'path':<28} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}  {'p50 ratio':>9} {'p99 ratio':>9}"
            f"  {'+p50 ms':>8} {'+p99 ms':>8}"
        )
        for name, values in samples.items():
            pc = percentiles(values)
            print(
                f"  {name:<28} {pc['p50']:8.2f} {pc['p90']:8.2f} {pc['p99']:8.2f}  "
                f"{pc['p50'] / base['p50']:8.2f}x {pc['p99'] / base['p99']:8.2f}x  "
                f"{pc['p50'] - base['p50']:8.2f} {pc['p99'] - base['p99']:8.2f}"
            )
            if name != "direct":
                record(
                    "gateway_overhead",
                    f"one streamed call (Anthropic wire), upstream {args.delay * 1000:.0f} ms: {name}",
                    f"p50 {pc['p50']:.1f} / p99 {pc['p99']:.1f} ms",
                    baseline=f"direct p50 {base['p50']:.1f} / p99 {base['p99']:.1f} ms",
                    ratio=f"{pc['p50'] / base['p50']:.2f}x / {pc['p99'] / base['p99']:.2f}x",
                )
        for name, url in urls.items():
            h = overhead_histogram(url)
            print(
                f"  {name}: the gateway's own time (excluding upstream) p50 <= {h['p50<=']:.1f} ms, "
                f"p99 <= {h['p99<=']:.1f} ms over {h['calls']:.0f} calls (histogram buckets)"
            )
    finally:
        for proc in reversed(procs):
            proc.stop()
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    main()
