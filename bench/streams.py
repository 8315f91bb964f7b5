"""The one client of the side-by-side benchmarks: streamed OpenAI chat completions over httpx, timed to
the first content token and to the end of the stream, whichever server answers."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from .servers import MODEL

# Idle connections are dropped by the client after this many seconds, before the servers drop them
# (both gateways are uvicorn, which closes an idle connection after 5 s, httpx's default expiry too):
# with both at 5 s a request can go out on a connection the server is closing at that moment, the
# likeliest cause of the ReadError that ended one make bench's run of gateway_vs_litellm.
KEEPALIVE_SECONDS = 2.0


@dataclass(frozen=True)
class Sample:
    status: int  # 0: no HTTP answer (`error` says why)
    ttft: float  # seconds to the first content delta (nan when none came)
    total: float  # seconds to the end of the response (after [DONE])
    tokens: int  # completion tokens the usage chunk reported
    error: str = ""  # the transport's error, when the call failed below HTTP

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.tokens > 0


@dataclass
class Path:
    """One way to reach the model: a base URL (…/v1), the key to send, and the client used for it."""

    name: str
    base_url: str
    key: str
    client: httpx.AsyncClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        limits = httpx.Limits(
            max_connections=400, max_keepalive_connections=400, keepalive_expiry=KEEPALIVE_SECONDS
        )
        self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0))


BODY = {
    "model": MODEL,
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say something short."}],
}


def _content_in(chunk: dict[str, object]) -> bool:
    choices = chunk.get("choices") or []
    return isinstance(choices, list) and any((c.get("delta") or {}).get("content") for c in choices)


async def stream_call(path: Path) -> Sample:
    """One streamed completion through `path`; a failure below HTTP is a sample too (status 0), so
    a batch reports which path failed and why instead of ending the benchmark with a traceback."""
    started = time.perf_counter()
    try:
        return await _stream(path, started)
    except httpx.TransportError as exc:
        return Sample(0, float("nan"), time.perf_counter() - started, 0, f"{type(exc).__name__}: {exc}")


async def _stream(path: Path, started: float) -> Sample:
    ttft, tokens = float("nan"), 0
    headers = {"authorization": f"Bearer {path.key}"}
    async with path.client.stream(
        "POST", f"{path.base_url}/chat/completions", json=BODY, headers=headers
    ) as r:
        if r.status_code != 200:
            await r.aread()
            return Sample(r.status_code, ttft, time.perf_counter() - started, 0)
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                continue  # read on to the end of the response, as the SDKs do
            chunk = json.loads(data)
            if ttft != ttft and _content_in(chunk):  # nan: no content yet
                ttft = time.perf_counter() - started
            usage = chunk.get("usage")
            if usage:
                tokens = int(usage.get("completion_tokens") or 0)
    return Sample(200, ttft, time.perf_counter() - started, tokens)


@dataclass
class Batches:
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0  # seconds the batches took, summed

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens for s in self.samples if s.ok) / self.wall if self.wall else 0.0


async def batch(path: Path, concurrency: int, into: Batches) -> None:
    """`concurrency` streams started together on one path."""
    started = time.perf_counter()
    into.samples += await asyncio.gather(*(stream_call(path) for _ in range(concurrency)))
    into.wall += time.perf_counter() - started


async def rounds(paths: list[Path], concurrency: int, count: int) -> dict[str, Batches]:
    """`count` rounds; each runs one batch per path, the order rotating, so drift on a shared machine
    hits every path alike."""
    out = {p.name: Batches() for p in paths}
    for i in range(count):
        shift = i % len(paths)
        for path in paths[shift:] + paths[:shift]:
            await batch(path, concurrency, out[path.name])
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
