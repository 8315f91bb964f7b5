"""The claude-code runtime's loopback relay (agentry_workspace/cli_relay.py) against a real upstream:
the scripted LLM server (the Anthropic wire protocol), or a gated SSE server for streaming."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from agentry_testing.scripted_llm import ScriptedLLM
from agentry_workspace.cli_relay import PLACEHOLDER_KEY, CliRelay

pytestmark = pytest.mark.unit

KEY = "sk-ant-relay-test-0123456789abcdef"
MODEL = "claude-sonnet-4-6"
FALLBACK = "claude-haiku-4-5"
CLI_HEADERS = {
    "x-api-key": PLACEHOLDER_KEY,
    "authorization": "Bearer stolen-elsewhere",
    "cookie": "session=abc",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219",
}


def body(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


def relay_to(upstream: str, **kwargs: Any) -> CliRelay:
    return CliRelay(
        upstream, KEY, [MODEL, FALLBACK], headers={"x-agentry-correlation-id": "corr-1"}, **kwargs
    )


async def test_a_call_is_forwarded_with_the_relays_credential_and_none_of_the_clients(
    llm: ScriptedLLM,
) -> None:
    llm.script([{"text": "hello there", "usage": {"input_tokens": 7, "output_tokens": 3}}])
    async with relay_to(llm.url) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        answer = await cli.post("/v1/messages?beta=true", json=body(), headers=CLI_HEADERS)
    assert relay.url.startswith("http://127.0.0.1:") and not relay.url.endswith(":0")
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"] == [{"type": "text", "text": "hello there"}]
    assert answer.json()["usage"]["output_tokens"] == 3
    (seen,) = llm.requests
    assert seen.path == "/v1/messages" and seen.body == body()
    assert seen.headers["x-api-key"] == KEY
    for dropped in ("authorization", "cookie"):
        assert dropped not in seen.headers
    assert PLACEHOLDER_KEY not in json.dumps(seen.headers)
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "claude-code-20250219"
    assert seen.headers["x-agentry-correlation-id"] == "corr-1"


async def test_a_fallback_model_and_count_tokens_pass_and_one_connection_carries_several_calls(
    llm: ScriptedLLM,
) -> None:
    llm.script([{"text": "one"}, {"text": "two"}])
    async with relay_to(llm.url) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        first = await cli.post("/v1/messages", json=body(FALLBACK), headers=CLI_HEADERS)
        second = await cli.post("/v1/messages", json=body(), headers=CLI_HEADERS)
        count = await cli.post("/v1/messages/count_tokens", json=body(), headers=CLI_HEADERS)
    assert [first.status_code, second.status_code] == [200, 200]
    assert [first.json()["content"][0]["text"], second.json()["content"][0]["text"]] == ["one", "two"]
    # The scripted server has no count_tokens: its own 404 comes back through the relay.
    assert count.status_code == 404 and "unknown path" in count.text
    assert [r.path for r in llm.requests] == ["/v1/messages", "/v1/messages", "/v1/messages/count_tokens"]
    assert {r.headers["x-api-key"] for r in llm.requests} == {KEY}


async def test_a_streamed_answer_arrives_as_server_sent_events(llm: ScriptedLLM) -> None:
    llm.script([{"text": "streamed words", "usage": {"input_tokens": 5, "output_tokens": 2}}])
    async with (
        relay_to(llm.url) as relay,
        httpx.AsyncClient(base_url=relay.url) as cli,
        cli.stream("POST", "/v1/messages", json=body(stream=True), headers=CLI_HEADERS) as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line[7:] async for line in answer.aiter_lines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events


class _Gated(BaseHTTPRequestHandler):
    """Sends one SSE event, then holds the rest until the test has seen that event (or gives up)."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()
    released_by_client: list[bool] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self._chunk(b"event: first\ndata: {}\n\n")
        self.released_by_client.append(self.release.wait(timeout=20))
        self._chunk(b"event: second\ndata: {}\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@pytest.fixture
def gated() -> Iterator[tuple[str, type[_Gated]]]:
    class Gated(_Gated):  # its own gate and record per test
        release = threading.Event()
        released_by_client: list[bool] = []

    handler = Gated
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        handler.release.set()
        server.shutdown()
        server.server_close()


async def test_each_chunk_passes_as_it_comes_not_when_the_answer_ends(
    gated: tuple[str, type[_Gated]],
) -> None:
    url, handler = gated
    seen: list[str] = []
    async with (
        relay_to(url) as relay,
        httpx.AsyncClient(base_url=relay.url) as cli,
        cli.stream("POST", "/v1/messages", json=body(stream=True)) as answer,
    ):
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                seen.append(line)
                handler.release.set()  # the upstream still holds the rest until now
    assert seen == ["event: first", "event: second"]
    # True only if the first event reached the client while the upstream was still waiting.
    assert handler.released_by_client == [True]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/messages", 405),
        ("PUT", "/v1/messages/count_tokens", 405),
        ("POST", "/v1/complete", 404),
        ("GET", "/v1/models", 404),
        ("POST", "/api/hello", 404),
        ("POST", "/v1/messages/../../_reset", 404),
        ("POST", "/_script", 404),
    ],
)
async def test_other_paths_and_methods_are_refused_without_reaching_the_upstream(
    llm: ScriptedLLM, method: str, path: str, status: int
) -> None:
    async with relay_to(llm.url) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        answer = await cli.request(method, path, json=body(), headers=CLI_HEADERS)
    assert answer.status_code == status
    assert answer.json()["type"] == "error"
    assert llm.requests == []


async def test_another_model_or_a_body_without_one_is_refused_naming_the_field(llm: ScriptedLLM) -> None:
    async with relay_to(llm.url) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        other = await cli.post("/v1/messages", json=body("claude-opus-4-1"), headers=CLI_HEADERS)
        missing = await cli.post("/v1/messages", json={"messages": []}, headers=CLI_HEADERS)
        garbage = await cli.post("/v1/messages", content=b"{not json", headers=CLI_HEADERS)
    assert other.status_code == 403 and "model" in other.json()["error"]["message"]
    assert "claude-opus-4-1" in other.json()["error"]["message"]
    assert missing.status_code == 400 and missing.json()["error"]["message"].startswith("model:")
    assert garbage.status_code == 400 and garbage.json()["error"]["message"].startswith("body:")
    assert llm.requests == []


async def test_an_oversize_body_is_refused_whether_its_length_is_declared_or_not(llm: ScriptedLLM) -> None:
    big = json.dumps(body(padding="x" * 4096)).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    async with relay_to(llm.url, max_body=1024) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        declared = await cli.post("/v1/messages", content=big, headers=CLI_HEADERS)
        streamed = await cli.post("/v1/messages", content=chunked(), headers=CLI_HEADERS)
    for answer in (declared, streamed):
        assert answer.status_code == 413 and answer.json()["error"]["message"] == "body: over 1024 bytes"
    assert llm.requests == []


async def test_an_unreachable_upstream_is_a_502_that_names_no_credential(llm: ScriptedLLM) -> None:
    url = llm.url
    llm.stop()  # nothing listens there any more
    async with relay_to(url) as relay, httpx.AsyncClient(base_url=relay.url) as cli:
        answer = await cli.post("/v1/messages", json=body(), headers=CLI_HEADERS)
    assert answer.status_code == 502 and answer.json()["error"]["type"] == "api_error"
    assert KEY not in answer.text


async def _raw(url: str, request: bytes) -> bytes:
    """What the relay answers to bytes no HTTP client library would send."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()  # the relay ends the connection after a refusal
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        # An absolute-form target naming another host is not a relayed path.
        (
            b"POST http://elsewhere.example/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
            b"404",
        ),
        (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: nope\r\n\r\n", b"400"),
        (b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n", b"400"),
    ],
)
async def test_malformed_requests_get_a_4xx_and_never_reach_the_upstream(
    llm: ScriptedLLM, request_bytes: bytes, status: bytes
) -> None:
    async with relay_to(llm.url) as relay:
        answer = await _raw(relay.url, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert llm.requests == []
