"""The gateway's governance file (channels, routes, budgets, zones), from YAML: a ConfigMap in a
cluster. The process settings (AGENTRY_GATEWAY_* variables) are `settings.Settings`.

    channels:                       # upstream endpoints; keys never leave the gateway
      - {name: anthropic, protocol: anthropic, apiKeyFile: /var/run/agentry/llm-keys/anthropic}
      - {name: openai, protocol: openai, baseURL: https://api.openai.com/v1, apiKeyEnv: OPENAI_API_KEY}
    routes:                         # first match wins; `model` is a shell pattern on the asked model
      - {model: "claude-*", chain: [{channel: anthropic}, {channel: openai, model: gpt-4.1}],
         cheaper: claude-haiku-4-5}
    defaults: {anthropic: anthropic, openai: openai}   # channel per protocol for unrouted models
    budgets:
      - {name: users, scope: user, limits: [{window: 5h, messages: 900}, {window: day, costUSD: "50"}]}
      - {name: everyone, scope: installation, limits: [{window: month, costUSD: "5000"}]}
    unpricedModelPrice: {inputPerMTok: "15", outputPerMTok: "75"}   # else unpriced models are refused
                                                                     # where a costUSD limit applies
    thresholds: {throttle: 80, critical: 95, highPriority: 8, lowPriority: 3}
    timeZone: UTC                   # calendar days and months
"""

from __future__ import annotations

import fnmatch
import os
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from agentry_common import pricing
from agentry_common.models import Provider as Protocol
from agentry_common.pricing import Price

from .budgets import BudgetPolicy, Calendar, Thresholds


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ChannelConfig(_Model):
    """One upstream endpoint speaking one protocol, with its key."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    protocol: Protocol
    base_url: str | None = Field(default=None, alias="baseURL")
    api_key_env: str | None = None
    api_key_file: str | None = None
    # The model `agentry doctor` (POST /channels/<name>/probe) asks for one token.
    probe_model: str | None = None
    # The models a call may ask this channel for (shell patterns, e.g. ["qwen*"]; ["*"]: any). Unset:
    # the models the pricing table lists for the channel's protocol's provider, and `probeModel`.
    # Models a route names for this channel (`chain: [{channel, model}]`) are always allowed.
    models: list[str] | None = None

    def allows(self, model: str) -> bool:
        """May a call ask this channel for `model` (when no route names it explicitly)?"""
        if self.models is not None:
            return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)
        return model == self.probe_model or pricing.published_by(self.protocol.value, model)

    def allowed(self) -> str:
        """The allow-list in words, for a refusal."""
        if self.models is not None:
            return ", ".join(self.models) or "no model"
        extra = f" and {self.probe_model}" if self.probe_model else ""
        return f"the {self.protocol.value} models of the pricing table{extra}"

    def api_key(self) -> str:
        """The key as it is now (ChannelPool.key_of reads it again every few seconds)."""
        if self.api_key_file:
            path = Path(self.api_key_file)
            return path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "").strip()
        return ""

    @property
    def needs_key(self) -> bool:
        # A local OpenAI-compatible server (LM Studio, vLLM) takes any key; hosted APIs need one.
        return self.base_url is None or self.protocol is Protocol.ANTHROPIC


class RouteTarget(_Model):
    channel: str
    model: str | None = None  # default: the model asked for


class Route(_Model):
    model: str = Field(min_length=1)
    chain: list[RouteTarget] = Field(min_length=1)
    cheaper: str | None = None


class AutoRouting(_Model):
    """Complexity-based routing for requests asking for model `auto` (routing.py)."""

    light: str = "claude-haiku-4-5"
    balanced: str = "claude-sonnet-4-6"
    strong: str = "claude-opus-4-6"
    light_below: float = 4.5
    strong_above: float = 6.5


class UnpricedModelPrice(_Model):
    """USD per million tokens charged for a model the pricing table does not list."""

    input_per_m_tok: Decimal = Field(alias="inputPerMTok", ge=0)
    output_per_m_tok: Decimal = Field(alias="outputPerMTok", ge=0)

    @property
    def price(self) -> Price:
        return Price(self.input_per_m_tok, self.output_per_m_tok)


class GatewayConfig(_Model):
    channels: list[ChannelConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    defaults: dict[Protocol, str] = Field(default_factory=dict)
    budgets: list[BudgetPolicy] = Field(default_factory=list)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    time_zone: str = "UTC"
    bucket_seconds: int = Field(default=300, ge=10, le=3600)
    auto: AutoRouting = Field(default_factory=AutoRouting)
    # Unset: a call (or an admission) for a model without a price is refused wherever a costUSD
    # limit applies to it (it would cost 0 and escape the limit); set: such models cost this.
    unpriced_model_price: UnpricedModelPrice | None = None

    @model_validator(mode="after")
    def _references(self) -> GatewayConfig:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("channel names must be unique")
        known = set(names)
        for route in self.routes:
            for target in route.chain:
                if target.channel not in known:
                    raise ValueError(f"route {route.model!r} names unknown channel {target.channel!r}")
        for protocol, channel in self.defaults.items():
            if channel not in known:
                raise ValueError(f"default channel for {protocol.value} is unknown: {channel!r}")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timeZone {self.time_zone!r} (an IANA name, e.g. Asia/Seoul)") from exc
        return self

    @property
    def default_price(self) -> Price | None:
        """The price of a model the pricing table does not list (None: such a model is unpriced)."""
        return self.unpriced_model_price.price if self.unpriced_model_price is not None else None

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.time_zone, self.bucket_seconds)

    @property
    def keep_seconds(self) -> int:
        """How much rolling history counters keep: the longest rolling window, at least a day."""
        windows = [limit.window_spec for p in self.budgets for limit in p.limits]
        return max([86400, *(w.seconds for w in windows if w.kind == "rolling")])

    def default_channel(self, protocol: Protocol) -> ChannelConfig | None:
        name = self.defaults.get(protocol)
        if name is not None:
            return self.channel(name)
        return next((c for c in self.channels if c.protocol is protocol), None)


def config_from_env(env: dict[str, str] | None = None) -> GatewayConfig:
    """No file: one channel per provider whose key is in the environment (development)."""
    source = os.environ if env is None else env
    channels: list[ChannelConfig] = []
    if source.get("ANTHROPIC_API_KEY"):
        channels.append(
            ChannelConfig(
                name="anthropic",
                protocol=Protocol.ANTHROPIC,
                base_url=source.get("ANTHROPIC_BASE_URL") or None,
                api_key_env="ANTHROPIC_API_KEY",
            )
        )
    if source.get("OPENAI_API_KEY") or source.get("OPENAI_BASE_URL"):
        channels.append(
            ChannelConfig(
                name="openai",
                protocol=Protocol.OPENAI,
                base_url=source.get("OPENAI_BASE_URL") or None,
                api_key_env="OPENAI_API_KEY",
            )
        )
    return GatewayConfig(channels=channels)


def load_config(path: str | None) -> GatewayConfig:
    if not path:
        return config_from_env()
    data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return GatewayConfig.model_validate(data)


__all__ = [
    "AutoRouting",
    "ChannelConfig",
    "GatewayConfig",
    "Route",
    "RouteTarget",
    "UnpricedModelPrice",
    "load_config",
]
