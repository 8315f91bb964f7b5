"""A channel probe: one minimal real call (max_tokens 1) through the channel's breaker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from agentry_common.models import Provider as Flavour
from agentry_common.records import LLMCallRecord
from agentry_llm import (
    BreakerRegistry,
    ChatRequest,
    Message,
    ProviderChain,
    ProvidersFailed,
    RetryPolicy,
    TextBlock,
)

from .channels import ChannelKeyMissing, ChannelPool, Redactor
from .config import GatewayConfig
from .ledger import Ledger
from .routing import Hop

PROBE_SECONDS = 30


class Prober:
    def __init__(
        self,
        config: GatewayConfig,
        pool: ChannelPool,
        breakers: BreakerRegistry,
        ledger: Ledger,
        redact: Redactor,
    ) -> None:
        self.config = config
        self.pool = pool
        self.breakers = breakers
        self.ledger = ledger
        self.redact = redact

    async def probe(self, channel_name: str) -> dict[str, Any]:
        """The probe's result; KeyError if there is no such channel."""
        channel = self.config.channel(channel_name)
        if channel is None:
            raise KeyError(channel_name)
        model = channel.probe_model or probe_default(self.config, channel_name)
        result: dict[str, Any] = {"channel": channel_name, "model": model}
        started = time.perf_counter()
        try:
            provider = self.pool.provider(Hop(channel, model))
        except ChannelKeyMissing as exc:
            return {**result, "ok": False, "latencyMs": 0.0, "error": str(exc)}
        chain = ProviderChain([provider], self.breakers, RetryPolicy(attempts=1))
        request = ChatRequest(
            system="You are a health check.",
            messages=[Message(role="user", content=[TextBlock(text="ping")])],
            max_tokens=1,
        )
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                response = await chain.complete(request)
        except (ProvidersFailed, TimeoutError) as exc:
            elapsed = time.perf_counter() - started
            self.pool.record(channel_name, False, elapsed, str(exc))
            error = self.redact(str(exc) or f"timed out after {PROBE_SECONDS} s")
            return {**result, "ok": False, "latencyMs": elapsed * 1000, "error": error}
        elapsed = time.perf_counter() - started
        self.pool.record(channel_name, True, elapsed)
        record = LLMCallRecord(
            id=uuid.uuid4().hex,
            ts=time.time(),
            outcome="probe",
            channel=channel_name,
            model=model,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            latency_ms=round(elapsed * 1000, 1),
        )
        # A probe's record names only what a probe has (no run, no budget decision).
        await self.ledger.record_call(record.model_dump(by_alias=True, mode="json", exclude_unset=True))
        return {**result, "ok": True, "latencyMs": elapsed * 1000, "error": None}


def probe_default(config: GatewayConfig, channel: str) -> str:
    for route in config.routes:
        for target in route.chain:
            if target.channel == channel and target.model:
                return target.model
    ch = config.channel(channel)
    return "claude-haiku-4-5" if ch is not None and ch.protocol is Flavour.ANTHROPIC else "gpt-4.1-nano"
