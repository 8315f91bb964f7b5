"""The operator's hot-path requests (wire.py) against a real local HTTP server: lightkube's credentials
reused, the body and query as the API server expects them, errors as lightkube's, lightkube's turn
when it has not authenticated yet or the server says 401; the transport's proxy from the environment."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from aiohttp import web
from lightkube import ApiError

from agentry_operator import kube
from agentry_operator.controller.transport import AiohttpTransport, Credentials
from agentry_operator.controller.wire import Wire

pytestmark = pytest.mark.unit

TIMEOUT = httpx2.Timeout(5.0)
BEARER = Credentials("Bearer t")
SEEN = web.AppKey("seen", list[dict[str, Any]])


class Server(str):
    """The test server's base URL, and the requests it received."""

    seen: list[dict[str, Any]]


async def api(request: web.Request) -> web.Response:
    """An API server's answers: the request echoed, or the one a path under /answer/ names."""
    answer = request.path.removeprefix("/answer/") if request.path.startswith("/answer/") else None
    if answer == "conflict":
        status = {
            "kind": "Status",
            "status": "Failure",
            "code": 409,
            "reason": "AlreadyExists",
            "message": "it exists",
        }
        return web.json_response(status, status=409)
    if answer == "unauthorized":
        return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
    if answer == "page":
        return web.Response(text="<html>bad gateway</html>", status=502)
    seen = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "type": request.headers.get("Content-Type"),
        "auth": request.headers.get("Authorization"),
        "host": request.headers.get("Host"),
        "body": await request.json(),
    }
    request.app[SEEN].append(seen)
    return web.json_response(seen, status=201 if request.method == "POST" else 200)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    app = web.Application()
    app[SEEN] = []
    app.router.add_route("*", "/{tail:.*}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # bound here; the port is read back from the socket
    await site.start()
    base = Server(f"http://127.0.0.1:{runner.addresses[0][1]}")
    base.seen = app[SEEN]
    yield base
    await runner.cleanup()


def wire_to(
    base: str, credentials: Credentials | None = BEARER, slots: asyncio.Semaphore | None = None
) -> tuple[Wire, AiohttpTransport]:
    transport = AiohttpTransport(ssl.create_default_context(), limit=4)
    transport.credentials = credentials
    return Wire(base, transport, "agentry-operator", TIMEOUT, slots or asyncio.Semaphore(4)), transport


def job(name: str = "j") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ns-1"},
        "spec": {},
    }


async def test_a_create_is_posted_with_lightkubes_credentials_and_the_field_manager(server: Server) -> None:
    wire, transport = wire_to(server)
    try:
        assert await wire.create(kube.raw("batch/v1", "Job"), job())
    finally:
        await transport.aclose()
    assert server.seen == [
        {
            "method": "POST",
            "path": "/apis/batch/v1/namespaces/ns-1/jobs",
            "query": {"fieldManager": "agentry-operator"},
            "type": "application/json",
            "auth": "Bearer t",
            "host": server.removeprefix("http://"),
            "body": job(),
        }
    ]


async def test_a_request_waits_for_a_slot_of_the_gate(server: Server) -> None:
    """The gate lightkube's requests pass (gate.py) bounds these too: none is sent while it is full."""
    slots = asyncio.Semaphore(1)
    wire, transport = wire_to(server, slots=slots)
    try:
        async with slots:  # the only slot, held (as by a lightkube request in flight)
            waiting = asyncio.ensure_future(wire.create(kube.raw("batch/v1", "Job"), job()))
            for _ in range(20):
                await asyncio.sleep(0.01)
            assert not waiting.done() and server.seen == []
        assert await waiting
        assert [r["method"] for r in server.seen] == ["POST"]
    finally:
        await transport.aclose()


async def test_a_status_is_merge_patched_on_the_subresource(server: Server) -> None:
    wire, transport = wire_to(server, Credentials(None))  # client certificates: no header at all
    try:
        sent = await wire.send(
            "PATCH",
            "/apis/agentry.dev/v1alpha1/namespaces/ns-1/executions/x/status",
            {"status": {"phase": "Running"}},
            "application/merge-patch+json",
        )
        patched = await wire.patch_status(kube.Execution, "x", "ns-1", {"status": {"phase": "Running"}})
    finally:
        await transport.aclose()
    assert sent is not None and patched
    echoed = json.loads(sent)
    assert echoed["type"] == "application/merge-patch+json"
    assert echoed["auth"] is None
    assert echoed["body"] == {"status": {"phase": "Running"}}


async def test_error_answers_are_lightkubes_errors_with_the_servers_status(server: Server) -> None:
    wire, transport = wire_to(server)
    try:
        with pytest.raises(ApiError) as conflict:
            await wire.send("POST", "/answer/conflict", {}, "application/json")
        with pytest.raises(ApiError) as page:
            await wire.send("POST", "/answer/page", {}, "application/json")
    finally:
        await transport.aclose()
    assert (conflict.value.status.code, conflict.value.status.reason) == (409, "AlreadyExists")
    assert conflict.value.status.message == "it exists"
    assert (page.value.status.code, page.value.status.message) == (502, "<html>bad gateway</html>")


async def test_lightkube_sends_it_before_it_authenticated_or_after_a_401(server: Server) -> None:
    fresh, transport = wire_to(server, credentials=None)
    stale, other = wire_to(server)
    try:
        assert not await fresh.create(kube.raw("batch/v1", "Job"), job())
        assert await stale.send("POST", "/answer/unauthorized", {}, "application/json") is None
    finally:
        await transport.aclose()
        await other.aclose()
    assert server.seen == []  # the fresh one sent nothing


async def test_the_transport_remembers_the_header_of_lightkubes_last_request(server: Server) -> None:
    transport = AiohttpTransport(ssl.create_default_context(), limit=4)
    async with httpx2.AsyncClient(base_url=server, transport=transport) as http:
        assert transport.credentials is None
        await http.post("/x", json={}, headers={"Authorization": "Bearer one"})
        assert transport.credentials == Credentials("Bearer one")
        await http.post("/x", json={})
        assert transport.credentials == Credentials(None)


async def test_the_proxy_is_the_environments_and_no_proxy_is_honoured(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # never listening: a request sent there is refused
        refused = f"http://127.0.0.1:{held.getsockname()[1]}"
        # Through the proxy (the test server plays it): the target's address is never dialled.
        monkeypatch.setenv("HTTP_PROXY", server)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        wire, transport = wire_to("http://apiserver.invalid:6443")
        try:
            assert await wire.create(kube.raw("batch/v1", "Job"), job())
        finally:
            await transport.aclose()
        assert server.seen[-1]["host"] == "apiserver.invalid:6443"
        # NO_PROXY names the server: straight to it, the (refusing) proxy unused.
        monkeypatch.setenv("HTTP_PROXY", refused)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        wire, transport = wire_to(server)
        try:
            assert await wire.create(kube.raw("batch/v1", "Job"), job())
        finally:
            await transport.aclose()
        assert server.seen[-1]["host"] == server.removeprefix("http://")
        assert len(server.seen) == 2
