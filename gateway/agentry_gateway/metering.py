"""The last step of a call: settle its reservation, write its `llmCalls` record, count it."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from agentry_common import pricing
from agentry_common.pricing import nanos_to_usd
from agentry_common.records import CallDecision, Charged, Estimate, LLMCallRecord
from agentry_llm import ChatResponse, TokenUsage

from . import prompt_cache
from .budgets import Amount
from .calls import Call, Outcome, takes_markers
from .channels import ChannelPool, Redactor
from .charging import Basis, charge, usage_amount
from .ledger import Ledger
from .metrics import Metrics
from .prompt_cache import CacheMemory
from .routing import Router

Spawn = Callable[[Coroutine[Any, Any, Any], str], object]  # starts a background task


class Meter:
    """Settles, records and counts calls, each exactly once (in the background where it writes)."""

    def __init__(
        self,
        metrics: Metrics,
        ledger: Ledger,
        pool: ChannelPool,
        router: Router,
        redact: Redactor,
        spawn: Spawn,
        cache: CacheMemory,
    ) -> None:
        self.metrics = metrics
        self.ledger = ledger
        self.pool = pool
        self.router = router
        self.redact = redact
        self.spawn = spawn
        self.cache = cache

    def refused(self, call: Call) -> None:
        """A call the budget refused: no reservation to settle, only its record."""
        self.metrics.requests.labels(call.protocol, "refused").inc()
        self.spawn(
            self.ledger.record_call(self.record(call, "refused", None, Amount(), "none").to_doc()),
            "call record",
        )

    def finish(self, call: Call, outcome: Outcome, response: ChatResponse | None) -> None:
        """Settle the reservation, write the call record, count: exactly once per call."""
        if call.finished:
            return
        call.finished = True
        if call.in_flight:
            call.in_flight = False
            self.metrics.in_flight.dec()
        response = response or call.response  # answered, even if the client left before it got it
        actual, basis = _actual(call, response, self.router.config.default_price)
        self.spawn(self.ledger.settle(call.subjects, call.rid, actual), "budget settlement")
        record = self.record(call, outcome, response, actual, basis)
        self.spawn(self.ledger.record_call(record.to_doc()), "call record")
        self._count(call, outcome, response, actual)
        self._remember(call, response)

    def _remember(self, call: Call, response: ChatResponse | None) -> None:
        """What the provider said it cached, for the estimates of the Execution's next calls."""
        hop = call.answered
        if response is None or hop is None or not call.prefixes or not takes_markers(hop):
            return
        found = call.prefixes
        if found[0].model != hop.model:  # a throttle or a fallback: that model's cache holds it
            found = prompt_cache.prefixes(hop.model, call.parsed.chat)
        self.cache.remember(call.cache_key, found, response.usage, call.admitted)

    def _count(self, call: Call, outcome: Outcome, response: ChatResponse | None, actual: Amount) -> None:
        total = time.perf_counter() - call.started
        self.metrics.requests.labels(call.protocol, outcome).inc()
        self.metrics.latency.labels(call.protocol).observe(total)
        if outcome == "ok":
            self.metrics.overhead.observe(max(0.0, total - call.upstream_seconds))
        if response is not None and call.answered is not None:
            channel, model = call.answered.channel.name, call.answered.model
            self.metrics.calls.labels(channel, model).inc()
            usage = response.usage
            self.metrics.tokens.labels(channel, model, "input").inc(usage.input_tokens)
            self.metrics.tokens.labels(channel, model, "cache_read").inc(usage.cache_read_tokens)
            self.metrics.tokens.labels(channel, model, "cache_write").inc(usage.cache_write_tokens)
            self.metrics.tokens.labels(channel, model, "output").inc(usage.output_tokens)
            self.metrics.cost.labels(channel, model).inc(float(nanos_to_usd(actual.cost_nanos)))
        if call.auto is not None:
            self.router.stats.record(call.subjects.agent, call.auto.tier, outcome == "ok")

    def on_event(self, call: Call) -> Callable[[str, dict[str, Any]], None]:
        """The provider chain's events: kept with the call, and counted."""

        def on_event(kind: str, data: dict[str, Any]) -> None:
            call.events.append((kind, data))
            if kind == "fallback":
                self.metrics.fallbacks.labels(
                    self.pool.hop_of(data["from"]), self.pool.hop_of(data["to"])
                ).inc()
            elif kind == "retry":
                self.metrics.retries.labels(self.pool.hop_of(data["provider"])).inc()
            elif kind == "breaker" and "previous" in data:
                self.metrics.breaker.labels(self.pool.hop_of(data["provider"])).set(
                    1 if data["state"] == "open" else 0
                )

        return on_event

    def record(
        self, call: Call, outcome: str, response: ChatResponse | None, actual: Amount, basis: Basis
    ) -> LLMCallRecord:
        claims, hop = call.claims, call.hop
        fallbacks = [d for k, d in call.events if k == "fallback"]
        model = hop.model if hop is not None else None
        usage = response.usage if response is not None else TokenUsage()
        return LLMCallRecord(
            id=call.id,
            ts=time.time(),
            outcome=outcome,
            namespace=claims.namespace,
            execution=claims.execution,
            execution_uid=claims.execution_uid,
            agent=claims.purpose if claims.typ == "user" else claims.agent,
            user=call.subjects.user,
            priority=claims.priority,
            correlation_id=call.correlation_id,
            protocol=call.protocol,
            stream=call.parsed.stream,
            requested_model=call.requested_model,
            model=model,
            channel=hop.channel.name if hop is not None else None,
            priced=pricing.is_priced(model) if model else None,
            fallbacks=len(fallbacks),
            fallback_path=[
                f"{self.pool.hop_of(d['from'])} -> {self.pool.hop_of(d['to'])}" for d in fallbacks
            ],
            retries=sum(1 for k, _ in call.events if k == "retry"),
            input_tokens=usage.input_tokens,
            uncached_input_tokens=usage.uncached_input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            cache_markers=call.cache_markers,
            cache_markers_dropped=call.markers_dropped,
            cache_markers_note=_markers_note(call),
            charged=Charged(
                tokens=actual.tokens,
                messages=actual.messages,
                cost_usd=pricing.usd_string(nanos_to_usd(actual.cost_nanos)),
                cost_nanos=actual.cost_nanos,
                basis=basis,
            ),
            estimate=Estimate(tokens=call.estimate.tokens, cost_nanos=call.estimate.cost_nanos),
            latency_ms=round((time.perf_counter() - call.started) * 1000, 1),
            upstream_ms=round(call.upstream_seconds * 1000, 1),
            errors=[self.redact(e.short()) for e in call.errors],
            decision=CallDecision(
                action=call.decision.action.value,
                zone=call.decision.zone.value,
                reason=call.decision.reason,
                model=call.decision.model,
            ),
            route=call.auto.to_wire() if call.auto is not None else None,
            dropped=call.parsed.dropped,
        )


def _actual(call: Call, response: ChatResponse | None, default: pricing.Price | None) -> tuple[Amount, Basis]:
    """What the call is charged (charging.py; a model without a price at `default`, the
    unpricedModelPrice): its answer's usage, plus its estimate for each attempt the provider may
    have billed without usage (one still running when the call was cut among them)."""
    answer = usage_amount(call.answered_model(), response, default) if response is not None else None
    return charge(answer, call.estimate, call.billed_attempts + int(call.attempt_open))


def _markers_note(call: Call) -> str:
    hop = call.hop
    if not call.markers_dropped or hop is None:
        return ""
    return (
        f"channel {hop.channel.name} speaks the {hop.channel.protocol.value} protocol, which caches "
        f"prompts by itself: its hop was sent the request without its {call.cache_markers} breakpoints"
    )
