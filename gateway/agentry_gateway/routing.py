"""Which channel serves a model, which model is the cheaper one, and complexity-based routing.

* `Router.chain(model, protocol)`: the routes in order (first match on the asked model), else the
  protocol's default channel with the same model. Each hop of the chain is one provider of the
  runtime's provider layer; the layer's retries, breakers and fallback walk it. A hop that passes
  the asked model on is kept only if its channel allows that model (`ChannelConfig.models`); a hop
  whose model the route names is the admin's choice and always kept. No hop left: `ModelNotAllowed`.
* `Router.cheaper(model)`: the route's `cheaper`, else a built-in step down within the same family
  (Opus -> Sonnet -> Haiku, gpt-4.1 -> -mini -> -nano, ...). Used in the throttle zone.
* `Router.auto(...)`: for requests that ask for model `auto`, scores the task (the governor seed's
  factors: complexity 40 %, budget availability 30 %, past success of the light model 20 %,
  priority 10 %) and picks light / balanced / strong from the config, with the explanation.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from agentry_common.models import Provider as Protocol
from agentry_llm import ChatRequest

from .config import ChannelConfig, GatewayConfig

AUTO_MODEL = "auto"

# Family step-downs (list prices in agentry_common.pricing make each cheaper than the one before).
DEFAULT_CHEAPER: tuple[tuple[str, str], ...] = (
    ("claude-opus-5*", "claude-sonnet-5-5"),
    ("claude-opus-4*", "claude-sonnet-4-6"),
    ("claude-sonnet-*", "claude-haiku-4-5"),
    ("claude-3-7-sonnet*", "claude-haiku-4-5"),
    ("claude-3-5-sonnet*", "claude-haiku-4-5"),
    ("gpt-5", "gpt-5-mini"),
    ("gpt-5-2*", "gpt-5-mini"),
    ("gpt-5-mini*", "gpt-5-nano"),
    ("gpt-4.1", "gpt-4.1-mini"),
    ("gpt-4.1-2*", "gpt-4.1-mini"),
    ("gpt-4.1-mini*", "gpt-4.1-nano"),
    ("gpt-4o", "gpt-4o-mini"),
    ("gpt-4o-2*", "gpt-4o-mini"),
    ("o3", "o4-mini"),
)


class NoRoute(Exception):
    """No channel can serve this model over this protocol."""


class ModelNotAllowed(Exception):
    """The channels this model would go to do not allow it (their `models`): answered with 400."""


@dataclass(frozen=True)
class Hop:
    channel: ChannelConfig
    model: str
    explicit: bool = False  # the route names this model (the admin's choice, not the caller's)

    @property
    def label(self) -> str:
        return f"{self.channel.name}:{self.model}"


_HARD = re.compile(
    r"\b(architect\w*|design|refactor\w*|prove|proof|optimi[sz]e\w*|debug\w*|analy[sz]e\w*|"
    r"trade-?offs?|migrat\w*|concurren\w*|security|algorithm\w*|plan)\b",
    re.IGNORECASE,
)
_EASY = re.compile(
    r"\b(summari[sz]e\w*|translate\w*|list|format\w*|extract\w*|classify|rename|spell\w*|short)\b",
    re.IGNORECASE,
)


@dataclass
class AutoDecision:
    model: str
    tier: str
    score: float
    factors: dict[str, dict[str, float]]
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tier": self.tier,
            "score": round(self.score, 2),
            "factors": self.factors,
            "reason": self.reason,
        }


@dataclass
class SuccessStats:
    """Exponential moving average (alpha 0.2) of call success per (agent, tier), in this process."""

    alpha: float = 0.2
    rates: dict[tuple[str, str], float] = field(default_factory=dict)

    def record(self, agent: str, tier: str, ok: bool) -> None:
        key = (agent, tier)
        previous = self.rates.get(key, 1.0)
        self.rates[key] = (1 - self.alpha) * previous + self.alpha * (1.0 if ok else 0.0)

    def rate(self, agent: str, tier: str) -> float:
        return self.rates.get((agent, tier), 1.0)


def complexity(request: ChatRequest) -> tuple[float, str]:
    """0..10 from what the request shows: size, depth, tools, output room and wording."""
    text = request.system_text() + " " + " ".join(m.text() for m in request.messages)
    size = len(text)
    score = 2.0
    notes: list[str] = []
    if size > 20_000:
        score += 3
        notes.append(f"{size:,} characters of context")
    elif size > 4_000:
        score += 1.5
        notes.append(f"{size:,} characters of context")
    turns = len(request.messages)
    if turns > 10:
        score += 1.5
        notes.append(f"{turns} messages deep")
    if len(request.tools) >= 4:
        score += 1
        notes.append(f"{len(request.tools)} tools")
    if request.max_tokens >= 8000:
        score += 1
        notes.append(f"max_tokens {request.max_tokens}")
    hard = {m.group(0).lower() for m in _HARD.finditer(text)}
    easy = {m.group(0).lower() for m in _EASY.finditer(text)}
    if hard:
        score += min(3.0, 1.0 * len(hard))
        notes.append("asks to " + ", ".join(sorted(hard)[:3]))
    if easy:
        score -= min(2.0, 1.0 * len(easy))
        notes.append("simple task words: " + ", ".join(sorted(easy)[:3]))
    return max(0.0, min(10.0, score)), "; ".join(notes) or "short, plain request"


class Router:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.stats = SuccessStats()

    def chain(self, model: str, protocol: Protocol) -> list[Hop]:
        """The hops that serve `model`: NoRoute if no channel could, ModelNotAllowed if none may."""
        hops = self._hops(model, protocol)
        allowed = [h for h in hops if h.explicit or h.channel.allows(h.model)]
        if not allowed:
            refused = "; ".join(f"channel {h.channel.name!r} allows {h.channel.allowed()}" for h in hops)
            raise ModelNotAllowed(f"model {model!r} is not allowed by the gateway ({refused})")
        return allowed

    def hop_models(self, model: str, protocol: Protocol) -> list[str]:
        """The models the hops serving `model` would answer with (for pricing checks)."""
        return list(dict.fromkeys(h.model for h in self.chain(model, protocol)))

    def _hops(self, model: str, protocol: Protocol) -> list[Hop]:
        for route in self.config.routes:
            if fnmatch.fnmatchcase(model, route.model):
                hops: list[Hop] = []
                for target in route.chain:
                    channel = self.config.channel(target.channel)
                    if channel is not None:
                        hops.append(Hop(channel, target.model or model, target.model is not None))
                return hops
        channel = self.config.default_channel(protocol)
        if channel is None:
            raise NoRoute(
                f"no route for model {model!r} and no {protocol.value} channel configured in the gateway"
            )
        return [Hop(channel, model)]

    def cheaper(self, model: str) -> str | None:
        for route in self.config.routes:
            if fnmatch.fnmatchcase(model, route.model) and route.cheaper:
                return route.cheaper
        for pattern, target in DEFAULT_CHEAPER:
            if fnmatch.fnmatchcase(model, pattern) and target != model:
                return target
        return None

    def auto(self, request: ChatRequest, *, agent: str, priority: int, budget_pct: float) -> AutoDecision:
        cfg = self.config.auto
        complexity_score, why = complexity(request)
        availability = max(0.0, min(10.0, 10.0 * (1.0 - budget_pct / 100.0)))
        light_failures = 10.0 * (1.0 - self.stats.rate(agent, "light"))
        factors = {
            "complexity": {"score": round(complexity_score, 2), "weight": 0.4},
            "budgetAvailability": {"score": round(availability, 2), "weight": 0.3},
            "pastFailuresOfLight": {"score": round(light_failures, 2), "weight": 0.2},
            "priority": {"score": float(priority), "weight": 0.1},
        }
        score = sum(f["score"] * f["weight"] for f in factors.values())
        if score >= cfg.strong_above:
            tier, model = "strong", cfg.strong
        elif score <= cfg.light_below:
            tier, model = "light", cfg.light
        else:
            tier, model = "balanced", cfg.balanced
        reason = (
            f"score {score:.2f} -> {tier} ({model}): complexity {complexity_score:.1f} ({why}), "
            f"budget left {availability * 10:.0f} %, light-model failures {light_failures:.1f}/10, "
            f"priority {priority}"
        )
        return AutoDecision(model, tier, score, factors, reason)
