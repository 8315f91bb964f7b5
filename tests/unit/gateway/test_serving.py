"""The gateway as `python -m agentry_gateway` serves it: idle connections outlast their clients'."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agentry_common.constants import SERVER_KEEP_ALIVE_SECONDS
from agentry_gateway import __main__ as gateway_main

pytestmark = pytest.mark.unit
GOOGLE_LB_IDLE_SECONDS = 600  # Google's external and internal Application Load Balancers


def test_the_server_keeps_idle_connections_longer_than_any_client() -> None:
    # A server that closes an idle connection first races the client's next request on it.
    assert httpx.Limits().keepalive_expiry is not None
    assert max(httpx.Limits().keepalive_expiry, GOOGLE_LB_IDLE_SECONDS) < SERVER_KEEP_ALIVE_SECONDS


def test_the_gateway_serves_with_that_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(gateway_main.uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    gateway_main.main()
    assert seen["app"] == "agentry_gateway.app:create_app" and seen["factory"] is True
    assert seen["timeout_keep_alive"] == SERVER_KEEP_ALIVE_SECONDS
