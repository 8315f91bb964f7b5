"""One scripted agent run for bench/cache_cost.py: the runtime's own loop in process, its calls timed,
and what the provider billed for them, read from the scripted provider's record of its answers."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentry_common.models import AgentSpec
from agentry_common.pricing import cost
from agentry_llm import ChatProvider, ChatRequest, ChatResponse, build_chain_providers
from agentry_llm.base import TextCallback
from agentry_localcluster import localhttp
from agentry_localcluster.procs import Proc
from agentry_workspace.config import build_config
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome
from agentry_workspace.runner import Runner

MODEL = "claude-sonnet-4-6"  # caches prefixes of 1024 tokens or more (pricing.cache_min_tokens)


def script(turns: int, tool_bytes: int) -> list[dict[str, Any]]:
    """`turns` answers: a shell command printing ~`tool_bytes` of records each, then a final text."""
    lines = max(1, tool_bytes // 52)
    items: list[dict[str, Any]] = []
    for turn in range(1, turns):
        command = (
            f"for i in $(seq 1 {lines}); do "
            f'echo "turn {turn:02d} record $i: status=ok latency_ms=$((i*7)) bytes=$((i*131))"; done'
        )
        items.append({"tool_use": {"name": "shell", "input": {"command": command}}})
    items.append({"text": f"Done: read {turns - 1} reports, every record says status=ok."})
    return items


def _marked(request: ChatRequest) -> bool:
    system = request.system if isinstance(request.system, list) else []
    blocks = [b for m in request.messages for b in m.content]
    return any(x.cache is not None for x in [*request.tools, *system, *blocks])


@dataclass
class Metered:
    """The runtime's provider, timed from each call to its first text; counts the calls the loop marked
    with cache breakpoints."""

    inner: ChatProvider
    ttft: list[float] = field(default_factory=list)
    marked: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        self.marked += int(_marked(request))
        started, first = time.perf_counter(), list[float]()

        def seen(text: str) -> None:
            if not first:
                first.append(time.perf_counter())
            if on_text is not None:
                on_text(text)

        response = await self.inner.complete(request, seen)
        self.ttft.append((first[0] if first else time.perf_counter()) - started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def run_agent(work: Path, name: str, base_url: str, key: str, caching: bool) -> tuple[Outcome, Metered]:
    """The runtime's loop (agentry_workspace.runner.Runner) in process, with the shell tool, against
    `base_url` (a gateway or a proxy) on the Anthropic wire; `caching`: the Agent's
    spec.promptCaching.enabled, so the loop places its breakpoints or none."""
    spec = AgentSpec.model_validate(
        {
            "instructions": "Read each day's report with the shell tool, then summarise them.",
            "model": {"provider": "anthropic", "name": MODEL},
            "tools": ["shell"],
            "budget": {"maxTurns": 100},
            "promptCaching": {"enabled": caching},
        }
    )
    workspace = work / "workspace"  # one path for every run: the system prompt names it
    shutil.rmtree(workspace, ignore_errors=True)
    env = {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": base_url, "PATH": os.environ.get("PATH", "")}
    cfg = build_config(
        env,
        spec=spec,
        name="bench",
        namespace="bench",
        input_text="Read the reports.",
        workspace=workspace,
        result_file=work / f"{name}.result",
        execution=name,
    )
    chain = build_chain_providers(cfg.model, env, timeout=120)
    metered = Metered(chain[0])
    sink = RecordingSink(correlation_id=name, execution=name)
    outcome = asyncio.run(Runner(cfg, sink, providers=[metered]).run())
    return outcome, metered


@dataclass(frozen=True)
class Call:
    """One answered call, as the provider billed it (all input; the cache's parts named)."""

    input: int
    read: int
    write: int
    write_1h: int
    output: int
    marks: int  # breakpoints the request carried when it reached the provider

    @property
    def cost(self) -> Decimal:
        return cost(
            MODEL,
            self.input,
            self.output,
            cache_read=self.read,
            cache_write=self.write,
            cache_write_1h=self.write_1h,
        )


def _marks(body: dict[str, Any]) -> int:
    system: list[Any] = body["system"] if isinstance(body.get("system"), list) else []
    blocks = [
        b for m in body.get("messages") or [] if isinstance(m.get("content"), list) for b in m["content"]
    ]
    return sum(1 for b in [*(body.get("tools") or []), *system, *blocks] if "cache_control" in b)


def calls(upstream: str) -> list[Call]:
    """Every call the scripted provider answered, with the usage it reported (the Messages API's)."""
    out = []
    for r in localhttp.get(f"{upstream}/_requests", timeout=30).json():
        usage = r.get("usage")
        if not usage:
            continue
        read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
        out.append(
            Call(
                usage["input_tokens"] + read + write,
                read,
                write,
                usage["cache_creation"]["ephemeral_1h_input_tokens"],
                usage["output_tokens"],
                _marks(r["body"]),
            )
        )
    return out


def floor(run: list[Call]) -> Decimal:
    """The cache-ideal bill of the same calls: each input token written to the cache once (at the
    5-minute write rate) and read at the read rate every later turn; the last turn's new tokens,
    never read again, at the input rate. Each turn's prompt begins with the previous one's."""
    total, previous = Decimal(0), 0
    for index, call in enumerate(run):
        new = call.input - previous
        last = index == len(run) - 1
        total += cost(MODEL, call.input, call.output, cache_read=previous, cache_write=0 if last else new)
        previous = call.input
    return total


def start_provider(work: Path, prefill_ms_per_1k: float) -> tuple[Proc, str]:
    """The scripted provider as its own process; returns it and its base URL."""
    argv = [
        sys.executable,
        "-m",
        "agentry_testing.scripted_llm",
        "--port",
        "0",
        "--prefill-ms-per-1k",
        str(prefill_ms_per_1k),
    ]
    llm = Proc("scripted-llm", argv, work / "llm.log").start()
    port = int(llm.wait_for_log(r"scripted LLM listening on http://[^:]+:(\d+)", 30, "listening").group(1))
    url = f"http://127.0.0.1:{port}"
    llm.wait_ready(lambda: localhttp.get(f"{url}/healthz").status_code == 200, 30, "ready")
    return llm, url


def prepare(upstream: str, turns: int, tool_bytes: int) -> None:
    """A fresh provider for the next path: no queue, no record, empty caches; the run's answers."""
    localhttp.post(f"{upstream}/_reset", timeout=30).raise_for_status()
    localhttp.post(f"{upstream}/_script", json=script(turns, tool_bytes), timeout=30).raise_for_status()
