"""Prometheus metrics of the gateway (one registry per app, so tests can build several)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_OVERHEAD = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "agentry_gateway_requests",
            "Client requests by protocol and outcome (ok, refused, unauthorized, invalid, failed, cancelled)",
            ["protocol", "outcome"],
            registry=r,
        )
        self.calls = Counter(
            "agentry_gateway_upstream_calls",
            "Answered calls by the channel and model that answered",
            ["channel", "model"],
            registry=r,
        )
        self.tokens = Counter(
            "agentry_gateway_tokens",
            "Tokens by channel, model and direction: input (all of it), its parts cache_read and "
            "cache_write, output",
            ["channel", "model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "agentry_gateway_cost_usd", "Cost in USD (pricing table)", ["channel", "model"], registry=r
        )
        self.latency = Histogram(
            "agentry_gateway_call_seconds",
            "Duration of a call through the gateway, retries and fallbacks included",
            ["protocol"],
            buckets=_LATENCY,
            registry=r,
        )
        self.overhead = Histogram(
            "agentry_gateway_overhead_seconds",
            "Time the gateway adds to a call (authentication, budget reservation, translation)",
            buckets=_OVERHEAD,
            registry=r,
        )
        self.fallbacks = Counter(
            "agentry_gateway_fallbacks",
            "Fallbacks from one hop to the next",
            ["from_hop", "to_hop"],
            registry=r,
        )
        self.retries = Counter("agentry_gateway_retries", "Upstream retries", ["hop"], registry=r)
        self.breaker = Gauge(
            "agentry_gateway_breaker_open", "1 while a hop's circuit breaker is open", ["hop"], registry=r
        )
        self.decisions = Counter(
            "agentry_gateway_budget_decisions",
            "Budget decisions by action and zone",
            ["action", "zone"],
            registry=r,
        )
        self.in_flight = Gauge("agentry_gateway_in_flight", "Calls in progress", registry=r)
        self.checkpoint_appends = Counter(
            "agentry_gateway_checkpoint_appends",
            "Checkpoint appends by outcome: stored, or repeated (a retry of a stored batch)",
            ["outcome"],
            registry=r,
        )
        self.checkpoint_conflicts = Counter(
            "agentry_gateway_checkpoint_conflicts",
            "Checkpoint appends refused with 409 (not the journal's next seq: another pod is ahead)",
            registry=r,
        )
        self.checkpoint_refused = Counter(
            "agentry_gateway_checkpoint_refused",
            "Checkpoint requests refused, by reason (ended, scope, limits, invalid)",
            ["reason"],
            registry=r,
        )
        self.checkpoint_held = Counter(
            "agentry_gateway_checkpoint_appends_held",
            "Appends sent beside a model call that let the calls being routed go first",
            registry=r,
        )
        self.checkpoint_bytes = Counter(
            "agentry_gateway_checkpoint_bytes", "Checkpoint entry bytes stored", registry=r
        )

    def watch_ledger(self, expired: Callable[[], float], gone: Callable[[], float]) -> None:
        """Gauges read from the ledger at scrape time: what a killed gateway pod left behind."""
        Gauge(
            "agentry_gateway_ledger_expired_reservations",
            "Reservations this pod counted at their estimate: their pod was gone or their TTL passed",
            registry=self.registry,
        ).set_function(expired)
        Gauge(
            "agentry_gateway_pods_gone",
            "Other gateway pods whose heartbeat is silent (their reservations get counted)",
            registry=self.registry,
        ).set_function(gone)
