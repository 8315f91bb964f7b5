"""Tokens at the door, keys never leaving, and the provider layer's retries, fallback and breakers
working inside the gateway (scripted upstreams)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from agentry_common.tokens import Keyring
from agentry_llm import ProvidersFailed
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .harness import (
    ANTHROPIC_KEY,
    GatewayServer,
    chain,
    complete,
    config,
    post,
    run_token,
    sent_key,
    settings,
    svc_headers,
    svc_token,
)

pytestmark = pytest.mark.integration

MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def fallback_config(llm: ScriptedLLM, backup: ScriptedLLM) -> Any:
    return config(
        llm,
        backup,
        routes=[
            {
                "model": "claude-sonnet-4-6",
                "chain": [{"channel": "anthropic"}, {"channel": "openai", "model": "gpt-4.1-mini"}],
            }
        ],
    )


# -- authentication ---------------------------------------------------------------------------------------


def test_requests_without_a_valid_run_token_are_refused(llm: ScriptedLLM) -> None:
    forged = run_token(keyring=Keyring.single("f" * 40, "test"))
    with GatewayServer(settings(), config(llm)) as gw:
        missing = post(gw.url, "/v1/messages", None, MESSAGE)
        wrong_key = post(gw.url, "/v1/messages", forged, MESSAGE)
        provider_key = post(gw.url, "/v1/messages", ANTHROPIC_KEY, MESSAGE)
        service = post(gw.url, "/v1/chat/completions", svc_token(), {"model": "gpt-4.1", "messages": []})
        run_on_admission = post(
            gw.url, "/v1/agentry/admission", run_token(), {"namespace": "a", "agent": "b"}
        )
        # The runtime's path: a 401 is not retried; the chain ends with providers_failed.
        provider_chain, _ = chain(gw.url, forged, [("anthropic", "claude-sonnet-4-6")])
        with pytest.raises(ProvidersFailed) as err:
            asyncio.run(complete(provider_chain))
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert "no token" in missing.json()["error"]["message"]
    assert wrong_key.status_code == 401 and "(bad_signature)" in wrong_key.json()["error"]["message"]
    assert provider_key.status_code == 401 and "(malformed)" in provider_key.json()["error"]["message"]
    assert service.status_code == 401 and service.json()["error"]["code"] == "invalid_api_key"
    assert run_on_admission.status_code == 403  # a genuine token, of the wrong kind
    assert "HTTP 401" in str(err.value) and not err.value.final
    assert not llm.requests  # nothing reached a provider


def test_provider_keys_never_reach_the_caller(llm: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 400, "message": f"invalid x-api-key {ANTHROPIC_KEY} for this org"}}])
    with GatewayServer(settings(), config(llm)) as gw:
        response = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        channels = localhttp.get(f"{gw.url}/channels", headers=svc_headers()).text
        metrics = localhttp.get(f"{gw.url}/metrics", headers=svc_headers()).text
    assert response.status_code == 400  # the request's fault: passed through, not retried
    assert ANTHROPIC_KEY not in response.text and "[REDACTED]" in response.text
    assert ANTHROPIC_KEY not in channels and ANTHROPIC_KEY not in metrics


def test_a_rotated_key_file_is_used_without_a_restart(llm: ScriptedLLM, tmp_path: Any) -> None:
    """A channel's key from a mounted file (how the chart gives it): replaced in place, as the kubelet
    does for an updated Secret, the next calls carry the new key and errors redact it too."""
    old, new = "sk-ant-old-key-0123456789", "sk-ant-new-key-9876543210"
    key = tmp_path / "anthropic"
    key.write_text(old + "\n")
    cfg = config(llm)
    cfg.channels[0] = cfg.channels[0].model_copy(update={"api_key_env": None, "api_key_file": str(key)})
    llm.script(
        [
            {"text": "one", "usage": {"input_tokens": 3, "output_tokens": 1}},
            {"text": "two", "usage": {"input_tokens": 3, "output_tokens": 1}},
            {"error": {"status": 400, "message": f"invalid x-api-key {new}"}},
        ]
    )
    with GatewayServer(settings(key_recheck_seconds=0.2), cfg) as gw:
        first = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        key.write_text(new + "\n")
        time.sleep(0.3)
        second = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        refused = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        channel = localhttp.get(f"{gw.url}/channels", headers=svc_headers()).json()
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert [sent_key(r.headers) for r in llm.requests[:2]] == [old, new]
    assert refused.status_code == 400 and new not in refused.text and "[REDACTED]" in refused.text
    assert [c["keyConfigured"] for c in channel["channels"] if c["name"] == "anthropic"] == [True]


# -- fallback and breakers ---------------------------------------------------------------------------------


def test_fallback_to_the_next_channel_after_retries(llm: ScriptedLLM, backup: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 529}}, {"error": {"status": 503}}])
    backup.script([{"text": "from the fallback", "usage": {"input_tokens": 10, "output_tokens": 3}}])
    with GatewayServer(settings(retry_attempts=2), fallback_config(llm, backup)) as gw:
        provider_chain, events = chain(gw.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
        response, _ = asyncio.run(complete(provider_chain))
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
        metrics = localhttp.get(f"{gw.url}/metrics", headers=svc_headers()).text
    assert response.message.text() == "from the fallback"
    assert events == []  # the runtime saw one clean answer
    assert len(llm.requests) == 2 and backup.requests[0].body["model"] == "gpt-4.1-mini"
    assert record["model"] == "gpt-4.1-mini" and record["channel"] == "openai"
    assert record["fallbacks"] == 1 and record["retries"] == 1
    assert record["fallbackPath"] == ["anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini"]
    assert record["charged"]["costNanos"] == 8800  # gpt-4.1-mini: 10 * $0.40/M + 3 * $1.60/M
    hops = 'from_hop="anthropic:claude-sonnet-4-6",to_hop="openai:gpt-4.1-mini"'
    assert f"agentry_gateway_fallbacks_total{{{hops}}} 1.0" in metrics


def test_breaker_opens_then_skips_the_failing_channel(llm: ScriptedLLM, backup: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 500}}, {"error": {"status": 500}}])
    backup.script([{"text": "b1"}, {"text": "b2"}, {"text": "b3"}])
    with GatewayServer(settings(retry_attempts=1, breaker_fail_max=2), fallback_config(llm, backup)) as gw:
        headers = []
        for _ in range(3):
            r = post(gw.url, "/v1/messages", run_token(), MESSAGE)
            assert r.status_code == 200
            headers.append((r.headers["x-agentry-channel"], r.headers.get("x-agentry-fallbacks")))
        listed = localhttp.get(f"{gw.url}/channels", headers=svc_headers()).json()["channels"]
        channels = {c["name"]: c for c in listed}
        metrics = localhttp.get(f"{gw.url}/metrics", headers=svc_headers()).text
    assert headers == [("openai", "1")] * 3
    assert len(llm.requests) == 2  # the third call never reached the open breaker's channel
    assert channels["anthropic"]["state"] == "down"
    assert channels["anthropic"]["breakers"] == {"anthropic/claude-sonnet-4-6@" + llm.url: "open"}
    assert channels["openai"]["state"] == "healthy" and channels["openai"]["calls"]["ok"] == 3
    assert 'agentry_gateway_breaker_open{hop="anthropic:claude-sonnet-4-6"} 1.0' in metrics


def test_every_channel_failing_is_a_retryable_error(llm: ScriptedLLM, backup: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 500}}, {"error": {"status": 500}}])
    backup.script([{"error": {"status": 502}}])
    with GatewayServer(settings(retry_attempts=1, breaker_fail_max=1), fallback_config(llm, backup)) as gw:
        first = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        skipped = post(gw.url, "/v1/messages", run_token(), MESSAGE)  # both breakers are open now
    assert first.status_code == 502 and first.json()["error"]["type"] == "api_error"
    assert "all providers failed" in first.json()["error"]["message"]
    assert skipped.status_code == 503 and skipped.json()["error"]["type"] == "overloaded_error"
    assert skipped.headers["retry-after"] == "30"


def test_a_stream_error_before_any_text_is_retried_invisibly(llm: ScriptedLLM) -> None:
    llm.script([{"stream_error": {"type": "overloaded_error"}}, {"text": "second try"}])
    with GatewayServer(settings(retry_attempts=2), config(llm)) as gw:
        provider_chain, events = chain(gw.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
        response, streamed = asyncio.run(complete(provider_chain))
    assert streamed == response.message.text() == "second try"
    assert events == [] and len(llm.requests) == 2


class _BreakingUpstream(BaseHTTPRequestHandler):
    """An Anthropic upstream that streams some text, then fails with an overload error (or, with
    `pause`, waits that long first)."""

    protocol_version = "HTTP/1.1"
    calls = 0
    pause = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()

        def sse(name: str, data: dict[str, Any]) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        message = {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [],
        }
        sse("message_start", {"type": "message_start", "message": {**message, "usage": {"input_tokens": 5}}})
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "partial "}},
        )
        time.sleep(self.pause)
        sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


@pytest.fixture
def breaking() -> Iterator[str]:
    _BreakingUpstream.calls = 0
    _BreakingUpstream.pause = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BreakingUpstream)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_break_after_text_is_final_for_the_request(breaking: str, backup: ScriptedLLM) -> None:
    backup.script([{"text": "must not be used"}])
    cfg = config(
        backup, backup, routes=[{"model": "*", "chain": [{"channel": "anthropic"}, {"channel": "openai"}]}]
    )
    cfg.channels[0].base_url = breaking
    cfg.channels[1].models = ["*"]  # the fallback hop may take the Anthropic model
    with GatewayServer(settings(retry_attempts=3), cfg) as gw:
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/messages",
            json={**MESSAGE, "stream": True},
            headers={"x-api-key": run_token()},
            timeout=30,
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
    events = [json.loads(line[6:]) for line in lines]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ["partial "]  # no second answer appended after the partial one
    assert events[-1]["type"] == "error" and "mid-stream" in events[-1]["error"]["message"]
    assert _BreakingUpstream.calls == 1 and not backup.requests  # neither retried nor fallen back
    assert record["outcome"] == "broken" and record["charged"]["tokens"] == record["estimate"]["tokens"]


def test_a_client_that_goes_away_is_charged_its_reservation(breaking: str, backup: ScriptedLLM) -> None:
    _BreakingUpstream.pause = 3.0
    cfg = config(backup, backup, routes=[{"model": "*", "chain": [{"channel": "anthropic"}]}])
    cfg.channels[0].base_url = breaking
    with GatewayServer(settings(), cfg) as gw:
        with httpx.stream(
            "POST",
            f"{gw.url}/v1/messages",
            json={**MESSAGE, "stream": True},
            headers={"x-api-key": run_token()},
            timeout=30,
        ) as response:
            for line in response.iter_lines():
                if "partial" in line:
                    break  # the client leaves in the middle of the answer
        deadline = time.monotonic() + patient(10)
        while not gw.gateway.ledger.calls and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
        docs = gw.gateway.ledger.docs  # type: ignore[attr-defined]
    assert record["outcome"] == "cancelled"
    assert record["charged"]["tokens"] == record["estimate"]["tokens"] > 0
    assert all(doc["reservations"] == {} for doc in docs.values())
