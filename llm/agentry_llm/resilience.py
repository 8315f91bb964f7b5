"""Retries, circuit breakers and the fallback chain around providers.

Imports nothing from Agentry but agentry_common, and is async throughout, so the LLM gateway can
share providers and breakers across concurrent requests.

- Retries: tenacity, exponential backoff with jitter (a server's retry-after wins, capped), only for
  errors the provider marked retryable (429, 5xx/529, timeouts, connection failures).
- Breakers: pybreaker's state machine, one per provider name. pybreaker only wraps sync calls (its
  async path needs tornado), so `AsyncBreaker` asks for admission before the await and reports the
  outcome to pybreaker after it: no lock is held across an await, cancellation is never a failure.
- Fallback: providers are tried in order; an open breaker skips a provider without a request.
Every retry, breaker change and fallback is reported through `on_event` and counted in `ChainStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import pybreaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from .base import ChatProvider, ProviderError, TextCallback
from .types import ChatRequest, ChatResponse

T = TypeVar("T")
EventCallback = Callable[[str, dict[str, Any]], None]


class BreakerOpen(Exception):
    """The provider's breaker is open: the call was not attempted."""


class AsyncBreaker:
    """A pybreaker.CircuitBreaker usable around awaits."""

    def __init__(self, name: str, *, fail_max: int = 5, reset_timeout: float = 60.0) -> None:
        # Our own storage object so `opened_at` is reachable through public API.
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            state_storage=self._storage,
            throw_new_error_on_trip=False,
            name=name,
        )

    @property
    def name(self) -> str:
        return str(self._cb.name)

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open" (pybreaker's names)."""
        return str(self._cb.current_state)

    @property
    def fail_counter(self) -> int:
        return int(self._cb.fail_counter)

    def admits(self) -> bool:
        """False while open and the reset timeout has not elapsed; then one trial is let through."""
        if self._cb.current_state != pybreaker.STATE_OPEN:
            return True
        opened = self._storage.opened_at
        timeout = timedelta(seconds=self._cb.reset_timeout)
        return opened is None or datetime.now(UTC) >= opened + timeout

    async def call(self, fn: Callable[[], Awaitable[T]], counts: Callable[[BaseException], bool]) -> T:
        """Run fn; a failure for which `counts` is true moves the breaker towards open."""
        if not self.admits():
            raise BreakerOpen(f"circuit breaker for {self.name} is open")
        try:
            result = await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if counts(exc):
                self._report(_raiser(exc))
            raise
        self._report(_none)
        return result

    def _report(self, outcome: Callable[[], None]) -> None:
        # pybreaker moves open -> half-open -> closed/open inside call(); the outcome function
        # replays what already happened. A breaker opened meanwhile by a concurrent call refuses.
        # The caller gets the original error (or the result) either way.
        with contextlib.suppress(Exception):
            self._cb.call(outcome)


def _none() -> None:
    return None


def _raiser(exc: BaseException) -> Callable[[], NoReturn]:
    def raise_it() -> NoReturn:
        raise exc

    return raise_it


class BreakerRegistry:
    """One breaker per provider (name and endpoint), shared by everything in the process."""

    def __init__(self, *, fail_max: int = 5, reset_timeout: float = 60.0) -> None:
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self._breakers: dict[str, AsyncBreaker] = {}

    def get(self, name: str) -> AsyncBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = AsyncBreaker(name, fail_max=self.fail_max, reset_timeout=self.reset_timeout)
            self._breakers[name] = breaker
        return breaker


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # per provider per call, the first try included
    initial: float = 1.0  # seconds before the first retry; doubles each time
    maximum: float = 30.0  # cap on one wait, also applied to a server's retry-after

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.maximum)
        base = min(self.initial * 2.0 ** (attempt - 1), self.maximum)
        return base * random.uniform(0.8, 1.2)  # jitter spreads retries of concurrent runs


@dataclass
class ChainStats:
    calls: int = 0
    retries: int = 0
    fallbacks: int = 0


@dataclass
class ChainFailure:
    provider: str
    error: str


class ProvidersFailed(Exception):
    """Every provider of the chain failed (after retries) or was skipped by its breaker.

    `final`: the chain stopped early because a provider refused by policy (a gateway budget); the
    last failure says why. Trying other providers or retrying would be refused the same way.
    """

    def __init__(self, failures: list[ChainFailure], *, final: bool = False, kind: str = "") -> None:
        self.failures = failures
        self.final = final
        self.kind = kind  # a final refusal's type (RefusalType)
        detail = "; ".join(f"{f.provider}: {f.error}" for f in failures)
        lead = "refused by the LLM gateway" if final else "all providers failed"
        super().__init__(f"{lead}: {detail}")


def _breaker_counts(exc: BaseException) -> bool:
    # Client errors (bad key, bad request) say nothing about the provider's health.
    return isinstance(exc, ProviderError) and exc.retryable


@dataclass
class ProviderChain:
    providers: Sequence[ChatProvider]
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_event: EventCallback | None = None
    stats: ChainStats = field(default_factory=ChainStats)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(kind, data)

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        failures: list[ChainFailure] = []
        for index, provider in enumerate(self.providers):
            if index > 0:
                self.stats.fallbacks += 1
                self._emit(
                    "fallback",
                    {
                        "from": self.providers[index - 1].name,
                        "to": provider.name,
                        "reason": failures[-1].error if failures else "",
                    },
                )
            try:
                response = await self._with_retries(provider, request, on_text)
            except BreakerOpen as exc:
                failures.append(ChainFailure(provider.name, str(exc)))
                self._emit("breaker", {"provider": provider.name, "state": "open", "action": "skipped"})
                continue
            except ProviderError as exc:
                failures.append(ChainFailure(provider.name, exc.short()))
                if exc.final:
                    raise ProvidersFailed(failures, final=True, kind=exc.kind) from exc
                continue
            return response
        raise ProvidersFailed(failures)

    async def _with_retries(
        self, provider: ChatProvider, request: ChatRequest, on_text: TextCallback | None
    ) -> ChatResponse:
        breaker = self.breakers.get(f"{provider.name}@{provider.endpoint}")
        policy = self.policy

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, ProviderError) and exc.retryable and breaker.admits()

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
            return policy.wait(state.attempt_number, retry_after)

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            self.stats.retries += 1
            self._emit(
                "retry",
                {
                    "provider": provider.name,
                    "attempt": state.attempt_number,
                    "status": exc.status if isinstance(exc, ProviderError) else None,
                    "error": exc.short() if isinstance(exc, ProviderError) else repr(exc),
                    "waitSeconds": round(state.upcoming_sleep, 3),
                },
            )

        async def attempt() -> ChatResponse:
            before = breaker.state
            self.stats.calls += 1
            try:
                return await breaker.call(lambda: provider.complete(request, on_text), _breaker_counts)
            finally:
                after = breaker.state
                if after != before:
                    self._emit("breaker", {"provider": provider.name, "state": after, "previous": before})

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, policy.attempts)),
            retry=retry_if_exception(retryable),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: ChatResponse = await retrying(attempt)
        return result
