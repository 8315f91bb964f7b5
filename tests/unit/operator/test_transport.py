"""The operator's aiohttp transport under lightkube's httpx client, against a real local HTTP server:
requests and answers go through whole, watches go to the streaming transport, failures are httpx's."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from agentry_operator.controller.transport import AiohttpTransport

pytestmark = pytest.mark.unit


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body": body.decode(),
            "auth": request.headers.get("Authorization"),
            "hosts": len(request.headers.getall("Host", [])),
            "encoding": request.headers.get("Accept-Encoding"),
        },
        status=201 if request.method == "POST" else 200,
        headers={"X-Answer": "yes"},
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.Response(text="late")


async def watch(request: web.Request) -> web.StreamResponse:
    answer = web.StreamResponse()
    await answer.prepare(request)
    for i in range(3):
        await answer.write(f'{{"n": {i}}}\n'.encode())
    await answer.write_eof()
    return answer


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/slow", slow)
    app.router.add_get("/watch", watch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # bound here; the port is read back from the socket
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def client(base: str) -> httpx2.AsyncClient:
    transport = AiohttpTransport(ssl.create_default_context(), limit=4)
    return httpx2.AsyncClient(base_url=base, transport=transport)


async def test_a_request_and_its_answer_go_through_whole(server: str) -> None:
    async with client(server) as http:
        answer = await http.post("/echo?x=1", content=b'{"a": 1}', headers={"Authorization": "Bearer t"})
    assert answer.status_code == 201
    assert answer.headers["x-answer"] == "yes"
    got = answer.json()
    assert got == {
        "method": "POST",
        "path": "/echo?x=1",
        "body": '{"a": 1}',
        "auth": "Bearer t",  # lightkube's authentication rides in the request's headers
        "hosts": 1,  # not sent twice
        "encoding": None,  # uncompressed answers: nothing to decode
    }


async def test_many_requests_share_the_bounded_connections(server: str) -> None:
    async with client(server) as http:
        answers = await asyncio.gather(*(http.get(f"/echo?i={i}") for i in range(40)))
    assert [a.json()["path"] for a in answers] == [f"/echo?i={i}" for i in range(40)]


async def test_a_watch_is_streamed_on_connections_of_its_own(server: str) -> None:
    transport = AiohttpTransport(ssl.create_default_context(), limit=4)
    try:
        async with transport.stream(f"{server}/watch?watch=true", {}, 5.0) as answer:
            body = b"".join([chunk async for chunk in answer.content.iter_any()])
        assert [line for line in body.decode().split("\n") if line] == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
        assert transport._session is None  # the requests' bounded pool is left alone
    finally:
        await transport.aclose()


async def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = held.getsockname()[1]
        async with client(f"http://127.0.0.1:{port}") as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get("/echo")


async def test_an_answer_too_slow_is_an_httpx_timeout(server: str) -> None:
    async with client(server) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.get("/slow", timeout=httpx2.Timeout(0.2))
