"""A real gateway (uvicorn on a free port, in a thread with its own event loop) for tests, and
clients that call it the way the runtime does (the provider layer over the real SDKs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import uvicorn

from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS
from agentry_common.models import ModelRef
from agentry_common.tokens import Keyring, RunLimits, mint_run_token, mint_service_token
from agentry_gateway.app import create_app
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import Ledger
from agentry_gateway.service import Gateway
from agentry_gateway.settings import Settings
from agentry_llm import (
    BreakerRegistry,
    ChatRequest,
    ChatResponse,
    Message,
    ProviderChain,
    RetryPolicy,
    TextBlock,
    build_provider,
)
from agentry_llm.factory import KEY_ENV
from agentry_localcluster import localhttp
from agentry_localcluster.procs import listening_socket
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

T = TypeVar("T")
KEYRING = Keyring.single("k" * 40, "test")
ANTHROPIC_KEY = "sk-ant-upstream-secret-0123456789"
OPENAI_KEY = "sk-openai-upstream-secret-0123456789"
FAST = RetryPolicy(attempts=1, initial=0.01, maximum=0.05)


def config(llm: ScriptedLLM, backup: ScriptedLLM | None = None, **extra: Any) -> GatewayConfig:
    """Channels `anthropic` and `openai` on scripted servers (keys from literal files via env)."""
    other = backup or llm
    data: dict[str, Any] = {
        "channels": [
            {
                "name": "anthropic",
                "protocol": "anthropic",
                "baseURL": llm.url,
                "apiKeyEnv": "GW_TEST_ANTHROPIC",
            },
            {
                "name": "openai",
                "protocol": "openai",
                "baseURL": other.openai_url,
                "apiKeyEnv": "GW_TEST_OPENAI",
            },
        ],
        **extra,
    }
    return GatewayConfig.model_validate(data)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ledger": "memory",
        "retry_attempts": 2,
        "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05,
        "breaker_fail_max": 5,
        "breaker_reset_seconds": 30,
        "upstream_timeout_seconds": 30,
        "settle_delay_seconds": 0.05,
    }
    values.update(overrides)
    return Settings.model_validate(values)


class GatewayServer:
    def __init__(
        self,
        settings: Settings,
        config: GatewayConfig,
        *,
        ledger: Ledger | None = None,
        keyring: Keyring = KEYRING,
    ) -> None:
        # Bound here on port 0 and handed to uvicorn: the port is ours from the start (no race).
        self.sock = listening_socket("127.0.0.1")
        self.port = int(self.sock.getsockname()[1])
        self.app = create_app(settings, config=config, keyring=keyring, ledger=ledger)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                timeout_keep_alive=SERVER_KEEP_ALIVE_SECONDS,  # as `python -m agentry_gateway` serves it
            )
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"gateway-{self.port}")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:
            self.sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gateway(self) -> Gateway:
        gw: Gateway = self.app.state.gateway
        return gw

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + patient(20)
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop (its Firestore client and tasks live there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drain(self) -> None:
        self.run(self.gateway.drain())

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=30)
        self.sock.close()
        if not self.loop.is_closed():
            self.loop.close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_token(
    execution: str = "ex-1",
    *,
    agent: str = "agent-a",
    namespace: str = "team-a",
    user: str = "user-1",
    priority: int = 5,
    limits: RunLimits | None = None,
    keyring: Keyring = KEYRING,
    execution_uid: str | None = None,
) -> str:
    return mint_run_token(
        keyring,
        namespace=namespace,
        execution=execution,
        agent=agent,
        execution_uid=execution_uid or "uid-" + execution,
        user=user,
        priority=priority,
        active_deadline_seconds=600,
        limits=limits,
    )


def svc_token(keyring: Keyring = KEYRING) -> str:
    return mint_service_token(keyring, "tests")


def svc_headers(keyring: Keyring = KEYRING) -> dict[str, str]:
    """What an operational caller (doctor, a metrics scraper) sends: a service token."""
    return {"authorization": f"Bearer {svc_token(keyring)}"}


def metric(url: str, name: str) -> float:
    """One unlabelled sample of the gateway at `url`'s /metrics (`name` as exposed, e.g. `..._total`)."""
    text = localhttp.get(f"{url}/metrics", headers=svc_headers(), timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


def chain(
    gateway_url: str,
    token: str,
    refs: list[tuple[str, str]],
    policy: RetryPolicy = FAST,
) -> tuple[ProviderChain, list[tuple[str, dict[str, Any]]]]:
    """What the runtime builds when ANTHROPIC_BASE_URL / OPENAI_BASE_URL point at the gateway and
    the run token is its provider key."""
    env: dict[str, str] = {}
    providers = []
    for provider, model in refs:
        ref = ModelRef.model_validate({"provider": provider, "name": model})
        env[KEY_ENV[ref.provider]] = token
        base = gateway_url if provider == "anthropic" else f"{gateway_url}/v1"
        providers.append(build_provider(ref.model_copy(update={"base_url": base}), env, timeout=30))
    events: list[tuple[str, dict[str, Any]]] = []
    return (
        ProviderChain(providers, BreakerRegistry(fail_max=50), policy, lambda k, d: events.append((k, d))),
        events,
    )


def ask(text: str = "hello", max_tokens: int = 100) -> ChatRequest:
    return ChatRequest(
        system="You are a test.",
        messages=[Message(role="user", content=[TextBlock(text=text)])],
        max_tokens=max_tokens,
    )


async def complete(chain_: ProviderChain, request: ChatRequest | None = None) -> tuple[ChatResponse, str]:
    streamed: list[str] = []
    try:
        response = await chain_.complete(request or ask(), on_text=streamed.append)
    finally:
        for provider in chain_.providers:
            await provider.aclose()
    return response, "".join(streamed)


def post(url: str, path: str, token: str | None, body: dict[str, Any], **headers: str) -> httpx.Response:
    h = dict(headers)
    if token is not None:
        h["x-api-key"] = token
    return localhttp.post(f"{url}{path}", json=body, headers=h, timeout=30)


def sent_key(headers: dict[str, str]) -> str | None:
    """The key a request carried (SDKs send `x-api-key` or `Authorization: Bearer`)."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


@contextmanager
def firestore_gateway(project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    """A gateway whose ledger, journals, inboxes and memories are in Firestore (`project`)."""
    with GatewayServer(settings(ledger="firestore", google_cloud_project=project), config(llm)) as gw:
        yield gw
