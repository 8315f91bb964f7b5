"""lightkube's requests sent by aiohttp (the client kopf already uses), and the informer's watches.

aiohttp sends a request in C-accelerated code (its HTTP parser), where httpx's pool builds and walks
more Python objects per request than the answer's JSON. lightkube keeps everything else — its
configuration, authentication (the request arrives with its Authorization header), models and
errors — and gets an httpx Response with the whole body, as gate.py hands it on anyway. The
operator never watches through lightkube: its watches are the informer's (informer.py), streamed
by `stream` on connections of their own.

The transport remembers the Authorization header of the last request lightkube sent (`credentials`):
the operator's hot path (wire.py) sends its own requests on the same connections with it.

HTTPS_PROXY / NO_PROXY are honoured as lightkube's httpx client honours them, read once per server:
aiohttp's `trust_env` looks them (and ~/.netrc) up again on every request, each in a worker thread —
two thread hand-offs per request, a quarter of the CPU of a status patch.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import httpx2
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

# Headers aiohttp sets itself from the request it sends; Accept-Encoding is not sent at all (neither
# httpx's nor aiohttp's default) so that answers come uncompressed: no decoding on either side, and
# the API server is on the cluster network.
DROPPED = frozenset({"host", "content-length", "transfer-encoding", "accept-encoding", "connection"})


@dataclass(frozen=True)
class Credentials:
    """The Authorization header lightkube's auth flow last put on a request (None: it sent none, as
    with client certificates)."""

    authorization: str | None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext, limit: int) -> None:
        self._ssl, self._limit = ssl_context, limit
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], tuple[URL | None, aiohttp.BasicAuth | None]] = {}
        self._watches: aiohttp.ClientSession | None = None  # the informer's streams
        self.credentials: Credentials | None = None  # None until lightkube has sent a request

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    def _proxy(self, url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        """The proxy the environment names for `url`'s server (None: none, or NO_PROXY), looked up once."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            try:
                self._proxies[key] = get_env_proxy_for_url(URL(url))
            except LookupError:
                self._proxies[key] = (None, None)
        return self._proxies[key]

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        timeouts: dict[str, float | None],
    ) -> Answer:
        """One request, its whole answer; connection failures raised as httpx's errors (the operator's
        handlers catch those)."""
        timeout = aiohttp.ClientTimeout(sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"))
        async with self._answer(self._client(), method, url, headers, data, timeout) as answer:
            body = await answer.read()
        return Answer(answer.status, list(answer.raw_headers), body)

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: dict[str, str], read_timeout: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose answer is read as it comes (informer.py), on connections of its own: a watch holds
        its connection for minutes, and the requests' pool is bounded. Errors as `send`'s."""
        if self._watches is None or self._watches.closed:
            self._watches = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0), auto_decompress=False
            )
        timeout = aiohttp.ClientTimeout(sock_connect=10.0, sock_read=read_timeout)
        async with self._answer(self._watches, "GET", url, headers, None, timeout) as answer:
            yield answer

    @contextlib.asynccontextmanager
    async def _answer(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        limits: aiohttp.ClientTimeout,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request through the environment's proxy; aiohttp's failures, while it is sent and while
        its answer is read, raised as httpx's (what the operator's handlers catch)."""
        proxy, proxy_auth = self._proxy(url)
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                skip_auto_headers=DROPPED,
                data=data,
                allow_redirects=False,
                timeout=limits,
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as answer:
                yield answer
        except TimeoutError as exc:
            raise httpx2.ReadTimeout(f"no answer in time: {exc}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        self.credentials = Credentials(request.headers.get("Authorization"))
        try:
            answer = await self.send(
                request.method,
                str(request.url),
                headers,
                await request.aread() or None,
                request.extensions.get("timeout") or {},
            )
        except httpx2.TransportError as exc:
            exc.request = request
            raise
        return httpx2.Response(answer.status, headers=answer.headers, content=answer.body)

    async def aclose(self) -> None:
        for session in (self._session, self._watches):
            if session is not None:
                await session.close()
