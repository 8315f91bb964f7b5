"""The gateway's ASGI app. `create_app()` is the uvicorn factory (`python -m agentry_gateway`).

Routes:
  POST /v1/messages                 Anthropic Messages API (run token)
  POST /v1/chat/completions         OpenAI chat completions (run token)
  POST /v1/agentry/admission        admission decision for the operator (service token)
  POST /v1/agentry/executions/end   an Execution is over: its run tokens admit no more calls (service token)
  GET  /v1/agentry/budgets          budget states of a user/agent (service token)
  GET  /v1/agentry/checkpoint       a run's journal, or its parent's (`?of=parent`) (run token)
  POST /v1/agentry/checkpoint       append to the run's journal (run token)
  POST /v1/agentry/checkpoints/prune  drop journals of Executions that are gone (service token)
  POST|GET /v1/agentry/steer        a person's message for a Running run / a run's messages (service)
  GET /v1/agentry/inbox             the run's queued steering messages (run token; ?wait: long poll)
  GET/PUT/DELETE /v1/agentry/memory[/{key}]  the run's Agent's memory (run token with `mem`)
  GET/PUT/DELETE /v1/agentry/memories/...    an Agent's memory; POST .../drop whole stores (service token)
  GET  /channels                    per-channel health (breakers, recent calls) (service token)
  POST /channels/{name}/probe       one minimal real call on a channel (service token)
  GET  /metrics                     Prometheus (service token)
  GET  /healthz  /readyz            status only, for anyone
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agentry_common.body_limit import BodyLimit
from agentry_common.heap import freeze_startup_heap
from agentry_common.tokens import Keyring

from . import telemetry
from .checkpoints import CheckpointStore
from .checkpoints.routes import router as checkpoint_router
from .checkpoints.steer_routes import router as steer_router
from .config import GatewayConfig, load_config
from .ledger import FirestoreLedger, Ledger, MemoryLedger
from .memory.routes import router as memory_router
from .routes import ROUTERS
from .service import MAX_BODY_BYTES, Gateway
from .settings import Settings, get_settings


def build_ledger(settings: Settings, config: GatewayConfig) -> Ledger:
    args = (config.budgets, config.calendar, config.thresholds, config.keep_seconds)
    delay = settings.settle_delay_seconds
    if settings.ledger == "memory":
        return MemoryLedger(*args, settle_delay=delay)
    from google.cloud.firestore import AsyncClient

    client = AsyncClient(project=settings.google_cloud_project, database=settings.firestore_database)
    return FirestoreLedger(
        client, *args, settle_delay=delay, leases=settings.budget_leases, gone_after=settings.pod_gone_seconds
    )


def build_gateway(
    settings: Settings,
    config: GatewayConfig | None = None,
    keyring: Keyring | None = None,
    ledger: Ledger | None = None,
    checkpoints: CheckpointStore | None = None,
) -> Gateway:
    config = config or load_config(settings.config_file)
    return Gateway(
        settings,
        config,
        keyring or settings.keyring(),
        ledger or build_ledger(settings, config),
        checkpoints,
    )


def _too_large(limit: int) -> tuple[bytes, bytes]:
    """413 in the providers' error shape (Anthropic's; OpenAI clients read `error.message` too)."""
    message = f"request larger than {limit // 2**20} MiB"
    error = {"type": "error", "error": {"type": "request_too_large", "message": message}}
    return b"application/json", json.dumps(error).encode()


def create_app(
    settings: Settings | None = None,
    *,
    config: GatewayConfig | None = None,
    keyring: Keyring | None = None,
    ledger: Ledger | None = None,
    checkpoints: CheckpointStore | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    def build() -> Gateway:
        return build_gateway(settings, config, keyring, ledger, checkpoints)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = build()
        freeze_startup_heap()  # full collections skip what start-up made (agentry_common/heap.py)
        try:
            yield
        finally:
            await app.state.gateway.aclose()

    app = FastAPI(title="Agentry LLM gateway", version="0.1.0", lifespan=lifespan)
    app.state.build_gateway = build  # used by `routes.gateway` when our lifespan does not run
    app.state.gateway_lock = asyncio.Lock()
    # Refused before it is read: a token holder cannot make the gateway buffer an endless body.
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, render=_too_large)
    for router in (*ROUTERS, checkpoint_router, steer_router, memory_router):
        app.include_router(router)
    telemetry.instrument(app)  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    return app
