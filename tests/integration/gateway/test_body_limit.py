"""A body over the gateway's ceiling is refused before it is read: 413 in the provider's error shape,
the upstream never called, and the gateway keeps answering."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentry_gateway.service import MAX_BODY_BYTES
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import GatewayServer, config, post, run_token, settings

pytestmark = pytest.mark.integration


def test_an_oversized_body_is_refused_before_the_gateway_reads_it(llm: ScriptedLLM) -> None:
    llm.script([{"text": "fine", "usage": {"input_tokens": 3, "output_tokens": 1}}])
    with GatewayServer(settings(), config(llm)) as gw:
        headers = {
            "x-api-key": run_token(),
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
        }

        def endless() -> Iterator[bytes]:  # chunked, no Content-Length: only bytes received count
            yield b'{"model": "claude-sonnet-4-6", "max_tokens": 10, '
            yield b'"messages": [{"role": "user", "content": "'
            for _ in range(MAX_BODY_BYTES // 2**20 + 8):
                yield b"x" * 2**20
            yield b'"}]}'

        chunked = localhttp.post(f"{gw.url}/v1/messages", content=endless(), headers=headers, timeout=60)
        declared = localhttp.post(
            f"{gw.url}/v1/messages", content=b"x" * (MAX_BODY_BYTES + 1), headers=headers, timeout=60
        )
        small = post(
            gw.url,
            "/v1/messages",
            run_token(),
            {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
            **{"anthropic-version": "2023-06-01"},
        )

    for refused in (chunked, declared):
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["type"] == "request_too_large"
    assert small.status_code == 200, small.text
    assert len(llm.requests) == 1  # only the small request reached the provider
