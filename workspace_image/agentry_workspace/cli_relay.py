"""A loopback relay between the Claude Code CLI and its model endpoint, so the credential stays here.

The CLI runs the model's Bash and file tools as the runtime's user: whatever is in its environment,
argv or files, a tool can read (`/proc/<cli>/environ`). So the CLI gets `ANTHROPIC_BASE_URL` = this
relay and a placeholder key; the relay runs inside the runtime (non-dumpable, hardening.py), listens
on 127.0.0.1 (port 0, reported in `url`), and forwards only the Messages API calls the CLI makes to
the real endpoint (the gateway with the run token, or the provider with its key). It drops every
credential header the client sent and adds its own, refuses models outside the run's chain, caps the
request body, and streams the answer (SSE) through as it arrives. It keeps no state between requests.

HTTP/1.1 framing is h11's (the parser httpx itself uses); the upstream is httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import h11
import httpx

RELAYED_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
MAX_BODY_BYTES = 32 * 1024 * 1024  # the gateway's own limit: a longer request would fail there anyway
MAX_HEAD_BYTES = 64 * 1024
IDLE_SECONDS = 120.0  # a connection that sends nothing for this long is closed
# After refusing a body mid-way: read and drop this much more (for at most LINGER_SECONDS) so the
# client reads the refusal instead of a reset (closing with unread data sends a TCP RST).
LINGER_BYTES = 1024 * 1024
LINGER_SECONDS = 2.0
PLACEHOLDER_KEY = "agentry-relay-holds-the-key"  # what the CLI gets: worth nothing anywhere else
# Never forwarded from the client: credentials (the relay sets its own) and per-hop framing.
CREDENTIAL_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
_REQUEST_DROPPED = CREDENTIAL_HEADERS | HOP_HEADERS | {"host", "content-length", "expect"}
_RESPONSE_DROPPED = HOP_HEADERS | {"proxy-authenticate", "set-cookie"}


@dataclass(frozen=True)
class Refusal:
    """An answer the relay gives itself, in the Anthropic error shape the CLI prints."""

    status: int
    kind: str
    message: str

    def body(self) -> bytes:
        return json.dumps({"type": "error", "error": {"type": self.kind, "message": self.message}}).encode()


def route(method: str, target: str) -> Refusal | None:
    """None for a call the CLI may make (POST to a relayed path, any query); else why not."""
    path = target.split("?", 1)[0]
    if path not in RELAYED_PATHS:
        return Refusal(404, "not_found_error", f"the relay forwards only {sorted(RELAYED_PATHS)}")
    if method != "POST":
        return Refusal(405, "invalid_request_error", f"{path} takes POST, not {method}")
    return None


def check_model(body: bytes, models: frozenset[str]) -> Refusal | None:
    """The request must name one of the run's models (its model and fallbacks) in `model`."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Refusal(400, "invalid_request_error", "body: not JSON")
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, str):
        return Refusal(400, "invalid_request_error", "model: a string is required")
    if model not in models:
        allowed = ", ".join(sorted(models))
        return Refusal(403, "permission_error", f"model: {model!r} is not this run's (allowed: {allowed})")
    return None


def upstream_headers(
    client: Iterable[tuple[bytes, bytes]], credential: str, extra: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The client's headers minus credentials and framing, plus the relay's credential and extras."""
    own = {k.lower() for k in extra} | {"x-api-key"}
    kept = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in client
        if (low := name.decode("latin-1").lower()) not in _REQUEST_DROPPED and low not in own
    ]
    return [*kept, *extra.items(), ("x-api-key", credential)]


def response_headers(upstream: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus per-hop framing (h11 frames the relay's own answer)."""
    return [(k, v) for k, v in upstream if k.decode("latin-1").lower() not in _RESPONSE_DROPPED]


class _Closed(Exception):
    """The client went away, or broke the protocol: the connection ends."""


class _Exchange:
    """One client connection: h11's state machine over an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # mypy cannot narrow a sentinel class
            try:
                async with asyncio.timeout(IDLE_SECONDS):
                    data = await self.reader.read(65536)
            except (TimeoutError, ConnectionError) as exc:
                raise _Closed from exc
            self.conn.receive_data(data)

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def read_body(self, request: h11.Request, limit: int) -> bytes | Refusal:
        length = dict(request.headers).get(b"content-length")
        too_big = Refusal(413, "request_too_large", f"body: over {limit} bytes")
        if length is not None and int(length) > limit:  # h11 has checked it is a number
            return too_big
        body = bytearray()
        while isinstance(event := await self.next_event(), h11.Data):
            body += event.data
            if len(body) > limit:
                return too_big
        if not isinstance(event, h11.EndOfMessage):
            raise _Closed
        return bytes(body)

    async def refuse(self, refusal: Refusal) -> None:
        body = refusal.body()
        headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
        # The client may still be sending a body we will not read: end the connection after this.
        await self.send(h11.Response(status_code=refusal.status, headers=[*headers, ("connection", "close")]))
        await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        if self.conn.their_state is h11.SEND_BODY:
            await self._linger()

    async def _linger(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        dropped = 0
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_SECONDS):
                while dropped < LINGER_BYTES and (data := await self.reader.read(65536)):
                    dropped += len(data)


class CliRelay:
    """`async with CliRelay(upstream, credential, models) as relay:` then give the CLI `relay.url`."""

    def __init__(
        self,
        upstream: str,
        credential: str,
        models: Iterable[str],
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._credential = credential
        self.models = frozenset(models)
        self._extra = dict(headers or {})
        self.max_body = max_body
        # No proxy variables or .netrc: a tool could write ~/.netrc; the upstream is the gateway
        # (in NO_PROXY) or the provider, reached like the runtime's own calls without an egress proxy.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=30.0), trust_env=False, follow_redirects=False
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""

    async def __aenter__(self) -> CliRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # Python 3.11's wait_closed does not end them
                writer.close()
            await self._server.wait_closed()
        await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        exchange = _Exchange(reader, writer)
        try:
            while isinstance(request := await exchange.next_event(), h11.Request):
                if not await self._answer(exchange, request):
                    break
                exchange.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                await exchange.refuse(Refusal(exc.error_status_hint, "invalid_request_error", str(exc)))
        except (_Closed, ConnectionError, h11.LocalProtocolError):
            pass  # the client left mid-exchange: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, exchange: _Exchange, request: h11.Request) -> bool:
        """Answer one request; False when the connection must end after it."""
        target = request.target.decode("ascii", "replace")
        body = await self._admit(exchange, request, target)
        if isinstance(body, Refusal):
            await exchange.refuse(body)
            return False
        await self._forward(exchange, request, target, body)
        return exchange.conn.our_state is h11.DONE and exchange.conn.their_state is h11.DONE

    async def _admit(self, exchange: _Exchange, request: h11.Request, target: str) -> bytes | Refusal:
        """The request's body if the relay forwards it; else why not (the path, size or model)."""
        refusal = route(request.method.decode("ascii", "replace"), target)
        if refusal is not None:
            return refusal
        body = await exchange.read_body(request, self.max_body)
        if isinstance(body, Refusal):
            return body
        return check_model(body, self.models) or body

    async def _forward(self, exchange: _Exchange, request: h11.Request, target: str, body: bytes) -> None:
        headers = upstream_headers(request.headers, self._credential, self._extra)
        try:
            outgoing = self._client.build_request(
                "POST", self.upstream + target, headers=headers, content=body
            )
        except httpx.InvalidURL:  # a query httpx will not send
            await exchange.refuse(Refusal(400, "invalid_request_error", "target: not a valid query"))
            return
        try:
            response = await self._client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            reason = f"the model endpoint could not be reached ({type(exc).__name__})"
            await exchange.refuse(Refusal(502, "api_error", reason))
            return
        try:
            await exchange.send(
                h11.Response(status_code=response.status_code, headers=response_headers(response.headers.raw))
            )
            # aiter_raw yields what each socket read brought: server-sent events pass as they come.
            async for chunk in response.aiter_raw():
                await exchange.send(h11.Data(data=chunk))
            await exchange.send(h11.EndOfMessage())
        except httpx.HTTPError as exc:  # the upstream broke mid-answer: the client must see it end
            raise _Closed from exc
        finally:
            await response.aclose()
