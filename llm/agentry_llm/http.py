"""What the providers that speak their wire directly share: one httpx client, a streamed POST whose
server-sent events the provider folds into its answer, and failures normalised to ProviderError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from agentry_common import pricing
from agentry_common.tracing import trace_headers

from .base import ProviderError, is_refusal, is_retryable_status, is_transport_error, retry_after_seconds

# (type, message) of an error response's JSON body, in the provider's own spelling.
ErrorOf = Callable[[Any], tuple[str, str]]
# As many connections as a busy gateway channel holds to its provider at once.
_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
_CONNECT_TIMEOUT = 10.0
GATEWAY_HEADER_PREFIX = "x-agentry-"
# Called once a call's request has been sent, while its answer is awaited: work that need not delay
# the request goes then (the gateway stores the journal entries riding a call, checkpoints/boundary.py).
# A context variable, as the tracing context is: it holds for the calls of the task that sets it.
REQUEST_SENT: ContextVar[Callable[[], None] | None] = ContextVar("agentry_llm_request_sent", default=None)


@dataclass
class Streamed:
    """One call's answer as it streams: its events, and the `x-agentry-*` headers it came with."""

    events: AsyncIterator[ServerSentEvent]
    gateway: dict[str, str]


class HttpProvider:
    """Its identity, the client, and `streaming` (one call). No retries: they belong to the
    resilience layer, which records each one."""

    kind: ClassVar[str]
    # Error types that mean "try again" whatever the status (Anthropic's overloaded_error in a 200).
    transient_types: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        model: str,
        base_url: str | None,
        default_base_url: str,
        timeout: float,
        headers: Mapping[str, str],
    ) -> None:
        self._model = model
        self._endpoint = base_url or "default"
        base = (base_url or default_base_url).rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=base,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT),
            limits=_LIMITS,
            # Plain http (a run's gateway in the cluster) has no TLS: loading the CA bundle would cost
            # a run's start tens of milliseconds for nothing.
            verify=base.startswith("https://"),
        )

    @property
    def name(self) -> str:
        return f"{self.kind}/{self._model}"

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._endpoint

    async def aclose(self) -> None:
        await self._client.aclose()

    def answered_by(self, reported: str | None) -> str:
        """The model a response says answered, when it is one we can price (the Agentry gateway
        substitutes a cheaper model in a budget's throttle zone, and says so); else the one asked
        for (providers may report dated snapshot ids)."""
        return reported if reported and pricing.is_priced(reported) else self._model

    @asynccontextmanager
    async def streaming(
        self, path: str, body: dict[str, Any], error_of: ErrorOf, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[Streamed]:
        """POST `body` (with the call's own `headers`) and yield its event stream; any failure, before
        or during the stream, leaves as a ProviderError. The caller's span (a turn, the gateway's
        call) continues upstream."""
        sent = {**trace_headers(), **(headers or {})}
        hook = REQUEST_SENT.get()
        extensions = {"trace": _on_body_sent(hook)} if hook is not None else None
        try:
            async with self._client.stream(
                "POST", path, json=body, headers=sent, extensions=extensions
            ) as response:
                if response.status_code >= 400:
                    raise self._status_error(response, await response.aread(), error_of)
                said = {k: v for k, v in response.headers.items() if k.startswith(GATEWAY_HEADER_PREFIX)}
                yield Streamed(EventSource(response).aiter_sse(), said)
        except ProviderError:
            raise
        except SSEError as exc:  # not an event stream: a proxy's page, a server that ignored `stream`
            raise ProviderError(f"not an event stream: {exc}", provider=self.name) from exc
        except httpx.TransportError as exc:  # (SSEError is one too: caught first)
            raise ProviderError(f"{type(exc).__name__}: {exc}", provider=self.name, retryable=True) from exc
        except Exception as exc:
            raise ProviderError(
                f"{type(exc).__name__}: {exc}", provider=self.name, retryable=is_transport_error(exc)
            ) from exc

    def _status_error(self, response: httpx.Response, raw: bytes, error_of: ErrorOf) -> ProviderError:
        try:
            parsed: Any = httpx.Response(200, content=raw).json()
        except ValueError:
            parsed = None
        err_type, message = error_of(parsed)
        status = response.status_code
        return ProviderError(
            message or f"{response.reason_phrase or 'error'}: {raw[:200].decode('utf-8', 'replace')}",
            provider=self.name,
            status=status,
            retryable=is_retryable_status(status) or err_type in self.transient_types,
            retry_after=retry_after_seconds(response.headers),
            final=is_refusal(err_type),
            kind=err_type or "",
        )


def _on_body_sent(hook: Callable[[], None]) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore `trace` extension that calls `hook` when the request's body has been written."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(".send_request_body.complete"):  # http11. or http2.
            hook()

    return trace
