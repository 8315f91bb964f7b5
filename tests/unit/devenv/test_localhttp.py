"""localhttp: httpx's calls on one shared TLS context, a caller's own `verify` kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agentry_common.tls import client_context
from agentry_localcluster import localhttp

pytestmark = pytest.mark.unit


def test_calls_share_the_context_unless_they_name_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake(method: str, url: str, **kwargs: Any) -> httpx.Response:
        seen.append(kwargs)
        return httpx.Response(200)

    monkeypatch.setattr(httpx, "request", fake)
    localhttp.get("http://127.0.0.1:1/healthz", timeout=1)
    localhttp.get("https://127.0.0.1:1/healthz", verify=False, timeout=1)  # a self-signed server
    assert seen[0]["verify"] is client_context() and seen[1]["verify"] is False
