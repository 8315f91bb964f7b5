"""lightkube's requests sent by aiohttp (the client kopf already uses), its watches by httpx.

With 1,000 runs starting, httpx and its pool were ~40% of the operator's CPU (py-spy on
`python -m bench`): per request it builds and walks more Python objects than the answer's JSON.
aiohttp does the same request in C-accelerated code (its HTTP parser). lightkube keeps everything
else — its configuration, authentication (the request arrives with its Authorization header), models
and errors — and gets an httpx Response with the whole body, as gate.py hands it on anyway.
Streamed answers (watches) stay on httpx: this transport reads whole bodies only.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx2

# Headers aiohttp sets itself from the request it sends; Accept-Encoding is not sent at all (neither
# httpx's nor aiohttp's default) so that answers come uncompressed: no decoding on either side, and
# the API server is on the cluster network.
DROPPED = frozenset({"host", "content-length", "transfer-encoding", "accept-encoding", "connection"})


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, ssl_context: ssl.SSLContext, streams: httpx2.AsyncBaseTransport, limit: int) -> None:
        self._ssl, self._streams, self._limit = ssl_context, streams, limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit)
            # trust_env: HTTPS_PROXY / NO_PROXY as lightkube's httpx client honours them
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=True)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if b"watch=true" in request.url.query:
            return await self._streams.handle_async_request(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        timeouts = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"))
        try:
            async with self._client().request(
                request.method,
                str(request.url),
                headers=headers,
                skip_auto_headers=DROPPED,
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=timeout,
            ) as answer:
                body = await answer.read()
        except TimeoutError as exc:
            raise httpx2.ReadTimeout(f"no answer in time: {exc}", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx2.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return httpx2.Response(answer.status, headers=list(answer.raw_headers), content=body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self._streams.aclose()
