"""What a run costs with prompt caching: a 30-turn agent run whose tools return ~2 KB each, on the
Anthropic wire, billed by the scripted provider's caching rules (agentry_testing.scripted_cache: the
providers' documented rules), in one run.

    python -m bench.cache_cost [--turns 30] [--tool-bytes 2000] [--prefill-ms-per-1k 50]

Paths (the same scripted conversation each; the provider's caches emptied between them):
  agentry cached     the runtime's loop (agentry_workspace's Runner, in process, real shell tool)
                     -> Agentry's gateway -> the provider; the breakpoints the loop places
                     (spec.promptCaching on, its default: agentry_llm.caching.place_breakpoints)
  agentry uncached   the same with spec.promptCaching.enabled false: no breakpoints, no caching
  litellm cached     the same runtime and breakpoints -> LiteLLM's proxy (its /v1/messages) -> the provider
  litellm injected   the runtime sending no breakpoints -> LiteLLM's proxy adding its own
                     (cache_control_injection_points: the system prompt, the newest message)
  floor              computed from the cached run's calls: every input token written to the cache once
                     and read at the read rate on every later turn (bench/cache_run.py, `floor`)
Billed cost: each call at agentry_common.pricing's rates for the usage the provider reported to the
gateway or proxy in front of it (what the provider bills), not what either gateway charged. Time to
first token of the last turn: the provider waits --prefill-ms-per-1k per 1,000 input tokens it did not
read from its cache before answering, as a model computes them.
"""

from __future__ import annotations

import argparse
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentry_localcluster.procs import Proc

from . import litellm_env
from .cache_run import MODEL, Call, Metered, calls, floor, prepare, run_agent, start_provider
from .results import record
from .servers import UPSTREAM_KEY, run_token, start_agentry

BENCH = "cache_cost"
CACHED, UNCACHED, LITELLM = "agentry cached", "agentry uncached", "litellm cached"
INJECTED = "litellm injected"
# LiteLLM's own breakpoints for clients that send none (its `cache_control_injection_points`): the
# system prompt and the newest message.
INJECTION = [{"location": "message", "role": "system"}, {"location": "message", "index": -1}]


def gateway_config(upstream: str) -> dict[str, Any]:
    channel = {
        "name": "anthropic",
        "protocol": "anthropic",
        "baseURL": upstream,
        "apiKeyEnv": "BENCH_UPSTREAM_KEY",
        "models": [MODEL],
    }
    return {"channels": [channel], "defaults": {"anthropic": "anthropic"}}


def litellm_config(upstream: str, inject: bool = False) -> dict[str, object]:
    """One Anthropic deployment on the scripted provider; cache_control passes through /v1/messages,
    and with `inject` LiteLLM adds breakpoints of its own."""
    params: dict[str, object] = {"model": f"anthropic/{MODEL}", "api_base": upstream, "api_key": UPSTREAM_KEY}
    if inject:
        params["cache_control_injection_points"] = INJECTION
    return {
        "model_list": [{"model_name": MODEL, "litellm_params": params}],
        "general_settings": {"master_key": litellm_env.MASTER_KEY},
        "litellm_settings": {"telemetry": False},
    }


def totals(billed: list[Call]) -> str:
    def total(field: str) -> int:
        return sum(int(getattr(c, field)) for c in billed)

    uncached = total("input") - total("read") - total("write")
    return (
        f"${sum((c.cost for c in billed), Decimal(0)):.4f}  input {total('input'):>7}"
        f"  read {total('read'):>7}  written {total('write'):>6}  uncached {uncached:>7}"
        f"  output {total('output'):>5}"
    )


def one_path(
    work: Path, upstream: str, name: str, url: str, key: str, caching: bool, args: Any
) -> tuple[list[Call], Metered]:
    prepare(upstream, args.turns, args.tool_bytes)
    outcome, metered = run_agent(work, name.replace(" ", "-"), url, key, caching)
    billed = calls(upstream)
    if outcome.stop_reason != "end_turn" or len(billed) != args.turns:
        raise SystemExit(
            f"{name}: the run ended {outcome.stop_reason} after {len(billed)} calls: {outcome.summary}"
        )
    marked = sum(1 for c in billed if c.marks)
    print(
        f"{name:<17} {totals(billed)}  turn {args.turns} ttft {metered.ttft[-1] * 1e3:6.1f} ms;"
        f" calls with breakpoints: from the runtime {metered.marked}/{len(billed)}, at the provider"
        f" {marked}/{len(billed)}",
        flush=True,
    )
    return billed, metered


def report(runs: dict[str, tuple[list[Call], Metered]], args: Any) -> None:
    bills = {name: sum((c.cost for c in billed), Decimal(0)) for name, (billed, _) in runs.items()}
    ideal = floor(runs[CACHED][0])
    print(f"{'floor':<17} ${ideal:.4f}  (computed from the cached run's {args.turns} calls)")
    run = f"{args.turns}-turn run, tools ~{args.tool_bytes / 1000:g} KB each, {MODEL}, Anthropic wire"
    cached, uncached, litellm, injected = bills[CACHED], bills[UNCACHED], bills[LITELLM], bills[INJECTED]
    record(
        BENCH,
        f"billed cost of a {run}: Agentry with caching",
        f"${cached:.4f}",
        baseline=f"cache-ideal floor ${ideal:.4f}",
        ratio=f"{cached / ideal:.2f}x",
        goal="<= 1.15x",
        met=cached <= ideal * Decimal("1.15"),
    )
    record(
        BENCH,
        "billed cost of the same run without caching (no breakpoints)",
        f"${uncached:.4f}",
        baseline=f"cache-ideal floor ${ideal:.4f}",
        ratio=f"{uncached / ideal:.2f}x",
    )
    record(
        BENCH,
        "billed cost of the same run through LiteLLM's proxy (caching passed through): Agentry",
        f"${cached:.4f}",
        baseline=f"LiteLLM ${litellm:.4f}",
        ratio=f"{cached / litellm:.2f}x",
        goal="<= LiteLLM's",
        met=cached <= litellm,
    )
    record(
        BENCH,
        "billed cost of the same run, the runtime sending no breakpoints and LiteLLM adding its own"
        " (cache_control_injection_points: system, newest message): Agentry with caching",
        f"${cached:.4f}",
        baseline=f"LiteLLM ${injected:.4f}",
        ratio=f"{cached / injected:.2f}x",
        goal="<= LiteLLM's",
        met=cached <= injected,
    )
    record_ttft({name: metered.ttft[-1] for name, (_, metered) in runs.items()}, args)
    print(
        f"cached/floor {cached / ideal:.2f}x, uncached/floor {uncached / ideal:.2f}x,"
        f" Agentry/LiteLLM {cached / litellm:.2f}x (injecting {cached / injected:.2f}x)"
    )


def record_ttft(ttft: dict[str, float], args: Any) -> None:
    record(
        BENCH,
        f"time to first token of turn {args.turns}, provider charging {args.prefill_ms_per_1k:g} ms per 1,000"
        f" uncached input tokens: with caching (LiteLLM {ttft[LITELLM] * 1e3:.0f} ms)",
        f"{ttft[CACHED] * 1e3:.0f} ms",
        baseline=f"without caching {ttft[UNCACHED] * 1e3:.0f} ms",
        ratio=f"{ttft[CACHED] / ttft[UNCACHED]:.2f}x",
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_cost")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--tool-bytes", type=int, default=2000, help="what each tool call returns, about")
    parser.add_argument(
        "--prefill-ms-per-1k", type=float, default=50.0, help="provider time per 1,000 uncached input tokens"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-cache-"))
    provider, upstream = start_provider(work, args.prefill_ms_per_1k)
    procs: list[Proc] = [provider]
    try:
        gateway, gateway_url = start_agentry(
            work, "agentry", gateway_config(upstream), {"AGENTRY_GATEWAY_LEDGER": "memory"}
        )
        procs.append(gateway)
        litellm, litellm_url = litellm_env.start(work, "litellm", litellm_config(upstream))
        procs.append(litellm)
        injecting, injecting_url = litellm_env.start(work, "litellm-inject", litellm_config(upstream, True))
        procs.append(injecting)
        print(
            f"{args.turns} turns, tools ~{args.tool_bytes} bytes,"
            f" prefill {args.prefill_ms_per_1k:g} ms per 1k uncached tokens"
        )
        runs = {
            UNCACHED: one_path(work, upstream, UNCACHED, gateway_url, run_token(execution="u"), False, args),
            CACHED: one_path(work, upstream, CACHED, gateway_url, run_token(execution="c"), True, args),
            LITELLM: one_path(work, upstream, LITELLM, litellm_url, litellm_env.MASTER_KEY, True, args),
            INJECTED: one_path(work, upstream, INJECTED, injecting_url, litellm_env.MASTER_KEY, False, args),
        }
        report(runs, args)
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
