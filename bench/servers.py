"""The servers the gateway benchmarks start: the scripted provider, Agentry's gateway, Redis; and the
peak-RSS sampler of a process tree."""

from __future__ import annotations

import json
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

from agentry_common.tokens import Keyring, mint_run_token
from agentry_localcluster import localhttp
from agentry_localcluster.procs import UVICORN_SERVING, Proc, start_with_ports

KEY = "b" * 40
UPSTREAM_KEY = "sk-bench-upstream-0123456789"
MODEL = "gpt-4.1-mini"  # priced alike in Agentry's table and (configured) in LiteLLM's
PRICE_IN, PRICE_OUT = Decimal("0.40"), Decimal("1.60")  # USD per million tokens (agentry_common.pricing)
INPUT_TOKENS, OUTPUT_TOKENS = 50, 12
ANSWER_TEXT = "A short answer of a few words, streamed in chunks."


def call_cost() -> Decimal:
    """What one scripted answer costs, in USD."""
    return (INPUT_TOKENS * PRICE_IN + OUTPUT_TOKENS * PRICE_OUT) / 1_000_000


def start_scripted(work: Path, calls: int, delay: float) -> tuple[Proc, str]:
    """The scripted provider, `calls` answers queued; returns it and its OpenAI base URL (…/v1)."""
    item = {
        "text": ANSWER_TEXT,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        "delay": delay,
        "repeat": calls,
    }
    script = work / "script.json"
    script.write_text(json.dumps([item]))
    argv = [sys.executable, "-m", "agentry_testing.scripted_llm", "--port", "0", "--script", str(script)]
    llm = Proc("scripted-llm", argv, work / "llm.log").start()
    port = int(llm.wait_for_log(r"scripted LLM listening on http://[^:]+:(\d+)", 30, "listening").group(1))
    url = f"http://127.0.0.1:{port}"
    llm.wait_ready(lambda: localhttp.get(f"{url}/healthz").status_code == 200, 30, "ready")
    return llm, f"{url}/v1"


def upstream_calls(upstream_v1: str) -> int:
    """How many chat completions the scripted provider has answered (its request log)."""
    requests = localhttp.get(upstream_v1.removesuffix("/v1") + "/_requests", timeout=30).json()
    return sum(1 for r in requests if str(r.get("path", "")).endswith("/chat/completions"))


def agentry_config(upstream_v1: str, cost_limit: Decimal | None) -> dict[str, Any]:
    channel = {
        "name": "openai",
        "protocol": "openai",
        "baseURL": upstream_v1,
        "apiKeyEnv": "BENCH_UPSTREAM_KEY",
        "models": [MODEL],
    }
    conf: dict[str, Any] = {"channels": [channel], "defaults": {"openai": "openai"}}
    if cost_limit is not None:
        limit = {"window": "day", "costUSD": str(cost_limit)}
        conf["budgets"] = [{"name": "bench", "scope": "user", "limits": [limit]}]
    return conf


def start_agentry(work: Path, name: str, conf: dict[str, Any], env: dict[str, str]) -> tuple[Proc, str]:
    """`python -m agentry_gateway` on port 0 (one uvicorn process, as in its Deployment)."""
    config_file = work / f"{name}.json"  # YAML is a superset of JSON
    config_file.write_text(json.dumps(conf))
    proc = Proc(
        name,
        [sys.executable, "-m", "agentry_gateway"],
        work / f"{name}.log",
        env={
            "AGENTRY_GATEWAY_PORT": "0",
            "AGENTRY_GATEWAY_HOST": "127.0.0.1",
            "AGENTRY_GATEWAY_CONFIG_FILE": str(config_file),
            "AGENTRY_TOKEN_KEYS": f"bench:{KEY}",
            "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
            **env,
        },
    ).start()
    port = int(proc.wait_for_log(UVICORN_SERVING, 60, "serving").group(1))
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: localhttp.get(f"{url}/readyz").status_code == 200, 60, "ready")
    return proc, url


def run_token(user: str = "bench-user", execution: str = "ex") -> str:
    return mint_run_token(
        Keyring.single(KEY, "bench"),
        namespace="bench",
        execution=execution,
        agent="a",
        user=user,
        active_deadline_seconds=3600,
    )


def start_redis(work: Path) -> tuple[Proc, int]:
    """Debian's redis-server on a quiet port (retried if another process takes it first)."""

    def launch(ports: tuple[int, ...]) -> tuple[Proc, int]:
        (port,) = ports
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        proc = Proc("redis", argv, work / "redis.log").start()
        proc.wait_ready(lambda: b"Ready to accept connections" in proc.output(), 30, "ready", ports=ports)
        return proc, port

    return start_with_ports("redis", 1, launch, host="127.0.0.1")


class PeakRSS:
    """Samples the RSS of a process and all its children every 50 ms; `peak` in bytes."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree_rss(self) -> int:
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.tree_rss())
            time.sleep(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
