"""The body ceiling answers 413 before a large body is parsed, for declared and for chunked bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

from agentry_common.body_limit import LINGER_BYTES, BodyLimit

pytestmark = pytest.mark.unit
LIMIT = 1024


class Item(BaseModel):
    name: str


def _require_auth(authorization: str = Header("")) -> None:
    if authorization != "Bearer ok":
        raise HTTPException(401, "no")


def _app() -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    seen: list[str] = []

    @app.post("/items", dependencies=[Depends(_require_auth)])
    async def create(item: Item) -> dict[str, str]:
        seen.append(item.name)
        return {"name": item.name}

    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    return app, seen


def _post(app: FastAPI, body: bytes, **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(
                "/items", content=body, headers={"content-type": "application/json", **headers}
            )

    return asyncio.run(go())


def test_a_declared_large_body_is_refused_with_413_and_never_reaches_the_endpoint() -> None:
    app, seen = _app()
    big = b'{"name": "' + b"x" * (LIMIT * 40) + b'"}'
    r = _post(app, big, authorization="Bearer ok")
    assert r.status_code == 413 and str(LIMIT) in r.json()["detail"]
    assert seen == []
    unauth = _post(app, big)
    assert unauth.status_code == 413  # before auth, before parsing


def test_a_small_body_passes_and_auth_still_applies() -> None:
    app, seen = _app()
    assert _post(app, b'{"name": "a"}', authorization="Bearer ok").json() == {"name": "a"}
    assert _post(app, b'{"name": "b"}').status_code == 401
    assert seen == ["a"]


def _chunked(app: FastAPI, chunks: list[bytes]) -> tuple[int, int]:
    """Send the body in chunks without Content-Length; returns (status, chunks the app pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/items", "raw_path": b"/items", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer ok")],
        "client": ("127.0.0.1", 1), "server": ("t", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = chunks[pulled - 1] if pulled <= len(chunks) else b""
        return {"type": "http.request", "body": body, "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], pulled


def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    app, seen = _app()
    chunks = [b'{"name": "'] + [b"x" * 512] * 1000 + [b'"}']
    status, pulled = _chunked(app, chunks)
    assert status == 413 and seen == []
    # The rest is read and dropped before the answer (so the client is not reset), never kept.
    assert pulled == len(chunks)
    # ... but only so much: an endless body is not read to its end.
    huge = [b'{"name": "'] + [b"x" * 2**20] * (LINGER_BYTES // 2**20 + 40) + [b'"}']
    status, pulled = _chunked(app, huge)
    assert status == 413 and pulled <= LINGER_BYTES // 2**20 + 3 < len(huge)
    ok_status, _ = _chunked(app, [b'{"name": ', b'"c"}'])
    assert ok_status == 200 and seen == ["c"]
