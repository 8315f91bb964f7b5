"""The API as a real HTTP server (uvicorn in a thread) for integration and browser tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from agentry_api.designer_llm import LLM
from agentry_api.main import create_app
from agentry_api.oidc import TokenVerifier
from agentry_api.settings import QUOTAS, Settings
from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS
from agentry_localcluster import localhttp, procs
from agentry_localcluster.procs import quiet_socket
from tests.fixtures.helpers import patient


@dataclass
class ApiServer:
    url: str
    app: FastAPI
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        c = localhttp.client(base_url=self.url, timeout=30, **kwargs)
        self.clients.append(c)
        return c

    def guest(self) -> httpx.Client:
        """A client with a fresh guest session (its own user)."""
        c = self.client()
        r = c.post("/api/session/guest")
        assert r.status_code == 201, r.text
        return c

    @property
    def state(self) -> Any:
        return self.app.state.agentry

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.server.should_exit = True
        self.thread.join(30)


def start_api(settings: Settings, verifier: TokenVerifier | None = None, llm: LLM | None = None) -> ApiServer:
    app = create_app(settings, verifier=verifier, llm=llm)
    # Bound here on port 0 and handed to uvicorn: the port is ours from the start (no race).
    sock = procs.listening_socket("127.0.0.1")
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=SERVER_KEEP_ALIVE_SECONDS,  # as the chart serves it
    )
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + patient(30)
    while not server.started:
        assert thread.is_alive(), "the API server thread died during startup"
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.05)
    return ApiServer(f"http://127.0.0.1:{port}", app, settings, server, thread)


def api_settings(project: str, namespace: str, kubeconfig: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "namespace": namespace,
        "google_cloud_project": project,
        "kubeconfig": kubeconfig,
        "session_secret": "test-secret-" + project,
        # Sweeps every 2 s (the defaults: 5 s), soon enough for the expiry and retry tests. Each pass
        # is Firestore queries: sweeping every 0.5 s, an idle API server took about 5 % of a core
        # with the emulator's share.
        "sync_retry_seconds": 2.0,
        "approval_check_seconds": 2.0,
        "sse_poll_seconds": 0.5,
        "sse_heartbeat_seconds": 1.0,
        # kube_timeout_seconds keeps its default (10 s): a test that wants the cluster unreachable sets
        # its own. At 3 s, a call to a starved API server on a loaded CI machine ran out, and a
        # DELETE answered 204 with the CR still there (the sync sweep retried it).
        "anthropic_api_key": None,
        "admin_token": "admin-token-for-tests",
        # Like `make dev`: guests, and a session cookie over plain http (the defaults are the safe ones).
        "guest_sessions": True,
        "cookie_secure": False,
        "openapi": True,  # also as `make dev` has it; schemathesis reads it (off by default)
        # Tests of other features make many guests and runs from one address: quotas out of their
        # way (test_strangers.py sets low ones and attacks them).
        "guest_mints_per_hour": 10_000,
        **{f"{prefix}quota_{name}": 1000 for prefix in ("", "guest_") for name in QUOTAS},
    }
    values.update(overrides)
    return Settings(**values)


class TcpProxy:
    """A TCP forwarder we can stop and start: the API server 'briefly unavailable' to one client.

    Its port is below the ephemeral range (`quiet_socket`), bound at once: when it listens again on
    the same port after a stop, no bind(0) or outgoing connection can have taken the port meanwhile.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._sock: socket.socket | None = quiet_socket("127.0.0.1")
        self.port = int(self._sock.getsockname()[1])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        async def go() -> None:
            if self._sock is not None:  # the first start: the socket bound in __init__
                sock, self._sock = self._sock, None
                self._server = await asyncio.start_server(self._handle, sock=sock)
            else:
                self._server = await asyncio.start_server(
                    self._handle, "127.0.0.1", self.port, reuse_address=True
                )

        self._run(go())

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""

        async def go() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            self._writers.clear()

        self._run(go())

    def close(self) -> None:
        self.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def port_of(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def listening_socket() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def serve(settings: Settings) -> Iterator[ApiServer]:
    """A fixture's body: the API with these settings, stopped afterwards (`yield from serve(...)`)."""
    server = start_api(settings)
    yield server
    server.stop()
