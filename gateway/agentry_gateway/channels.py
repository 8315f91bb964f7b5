"""Upstream channels: providers of the runtime's provider layer, built once per (channel, model)
with the channel's key, sharing one breaker registry; and the health of each channel.

A channel's key is re-read every `key_recheck_seconds` (default 10 s): a rotated Secret, which the
kubelet updates in the mounted file within about a minute, is used without a restart (the next call
gets a provider built with the new key; the old one is closed with the pool)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from agentry_common.models import ModelRef
from agentry_llm import BreakerRegistry, ChatProvider, build_provider
from agentry_llm.factory import KEY_ENV

from .config import ChannelConfig, GatewayConfig
from .routing import Hop

log = logging.getLogger("agentry.gateway.channels")

_KEYLIKE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|agt1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+|AIza[0-9A-Za-z_\-]{20,})"
)


class Redactor:
    """Removes the channels' keys and anything key-shaped from text sent back to a run pod."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Also redact `secret` (a rotated key; the old ones stay redacted)."""
        self.secrets = sorted({*self.secrets, secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return _KEYLIKE.sub("[REDACTED]", text)


class ChannelKeyMissing(Exception):
    def __init__(self, channel: ChannelConfig) -> None:
        where = channel.api_key_file or (f"${channel.api_key_env}" if channel.api_key_env else "nowhere")
        super().__init__(f"channel {channel.name!r} has no API key (looked in {where})")
        self.channel = channel


@dataclass
class ChannelHealth:
    ok: int = 0
    failed: int = 0
    last_ok: float | None = None
    last_error: float | None = None
    error: str | None = None
    latency_ms: float | None = None  # exponential moving average of answered calls

    def record(self, ok: bool, latency: float, error: str | None = None) -> None:
        now = time.time()
        if ok:
            self.ok += 1
            self.last_ok = now
            ms = latency * 1000
            self.latency_ms = ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * ms
        else:
            self.failed += 1
            self.last_error = now
            self.error = error


@dataclass
class ChannelPool:
    config: GatewayConfig
    breakers: BreakerRegistry
    timeout: float = 600.0
    key_recheck_seconds: float = 10.0
    _providers: dict[tuple[str, str], tuple[ChatProvider, str]] = field(default_factory=dict)  # and its key
    _retired: list[ChatProvider] = field(default_factory=list)  # built with a key since rotated
    _keys: dict[str, tuple[str, float]] = field(default_factory=dict)  # channel -> (key, read at)
    _breaker_keys: dict[str, set[str]] = field(default_factory=dict)
    health: dict[str, ChannelHealth] = field(default_factory=dict)
    redact: Redactor = field(init=False)

    def __post_init__(self) -> None:
        self.redact = Redactor(self.keys())

    def key_of(self, channel: ChannelConfig) -> str:
        """The channel's key as last read; read again when older than `key_recheck_seconds`."""
        now = time.monotonic()
        cached = self._keys.get(channel.name)
        if cached is not None and now - cached[1] < self.key_recheck_seconds:
            return cached[0]
        key = channel.api_key()
        if cached is not None and key != cached[0]:
            log.info("channel %s: its API key changed; new calls use the new one", channel.name)
            if len(key) >= 8:
                self.redact.add(key)
        self._keys[channel.name] = (key, now)
        return key

    def provider(self, hop: Hop) -> ChatProvider:
        key = (hop.channel.name, hop.model)
        api_key = self.key_of(hop.channel)
        built = self._providers.get(key)
        if built is not None and built[1] == api_key:
            return built[0]
        if not api_key and hop.channel.needs_key:
            raise ChannelKeyMissing(hop.channel)
        ref = ModelRef(provider=hop.channel.protocol, name=hop.model, base_url=hop.channel.base_url)
        # A local OpenAI-compatible server takes any key.
        env = {KEY_ENV[hop.channel.protocol]: api_key or "unused"}
        provider = build_provider(ref, env, timeout=self.timeout)
        if built is not None:
            self._retired.append(built[0])  # calls in flight may still use it: closed with the pool
        self._providers[key] = (provider, api_key)
        self._breaker_keys.setdefault(hop.channel.name, set()).add(self.breaker_key(provider))
        return provider

    @staticmethod
    def breaker_key(provider: ChatProvider) -> str:
        # The provider layer's ProviderChain names breakers this way.
        return f"{provider.name}@{provider.endpoint}"

    def hop_of(self, provider_name: str) -> str:
        """ "anthropic/claude-x" -> "channel:claude-x" for events of the provider layer."""
        for (channel, model), (provider, _) in self._providers.items():
            if provider.name == provider_name:
                return f"{channel}:{model}"
        return provider_name

    def record(self, channel: str, ok: bool, latency: float, error: str | None = None) -> None:
        self.health.setdefault(channel, ChannelHealth()).record(
            ok, latency, self.redact(error) if error is not None else None
        )

    def keys(self) -> list[str]:
        """Every configured key value (to redact them from anything the gateway returns)."""
        return [k for k in (c.api_key() for c in self.config.channels) if len(k) >= 8]

    def status(self, channel: ChannelConfig) -> dict[str, Any]:
        h = self.health.get(channel.name, ChannelHealth())
        breakers = {
            name: self.breakers.get(name).state
            for name in sorted(self._breaker_keys.get(channel.name, set()))
        }
        open_count = sum(1 for s in breakers.values() if s == "open")
        key_ok = bool(self.key_of(channel)) or not channel.needs_key
        if not key_ok:
            state, hint = "misconfigured", "no API key: mount the channel's Secret or set its variable"
        elif breakers and open_count == len(breakers):
            state, hint = "down", "every breaker of the channel is open: the provider keeps failing"
        elif open_count:
            state, hint = "degraded", f"{open_count} of {len(breakers)} breakers open"
        elif h.last_error is not None and (h.last_ok is None or h.last_error > h.last_ok):
            state, hint = "degraded", "the last call failed"
        elif h.last_ok is None:
            state, hint = "unknown", "no call yet (probe it: agentry doctor)"
        else:
            state, hint = "healthy", ""
        return {
            "name": channel.name,
            "protocol": channel.protocol.value,
            "baseURL": channel.base_url or "default",
            "state": state,
            "hint": hint,
            "keyConfigured": key_ok,
            "breakers": breakers,
            "calls": {"ok": h.ok, "failed": h.failed},
            "lastOk": h.last_ok,
            "lastError": h.last_error,
            "error": h.error,
            "latencyMs": round(h.latency_ms, 1) if h.latency_ms is not None else None,
        }

    async def aclose(self) -> None:
        for provider in [p for p, _ in self._providers.values()] + self._retired:
            await provider.aclose()
        self._providers.clear()
        self._retired.clear()
