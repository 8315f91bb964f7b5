"""A bound on the operator client's requests in flight, above its connection pool.

A semaphore lets at most `limit` requests reach the connection pool; the others wait on the
semaphore, which costs nothing per request (a pool's own queue is walked on every request sent and
every answer read), and the pool holds `limit` connections.

A slot is held until the answer's body has been read: the gate reads it (the client would read it
all anyway) and hands the client the bytes, so no answer can keep a slot however it is consumed.
"""

from __future__ import annotations

import asyncio

import httpx2

LIMIT = 32  # requests in flight: the bench's bare client sends as many (bench/__main__.py)


class GatedTransport(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int = LIMIT) -> None:
        self._inner, self._gate = inner, asyncio.Semaphore(limit)

    @property
    def slots(self) -> asyncio.Semaphore:
        """The gate itself, for requests sent beside lightkube on the same pool (wire.py)."""
        return self._gate

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        async with self._gate:
            response = await self._inner.handle_async_request(request)
            try:
                body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            finally:
                await response.aclose()
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx2.ByteStream(body),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()
