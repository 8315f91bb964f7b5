"""The provider layer's own wire clients and the vendors' SDKs against the scripted wire server, over
HTTP: the SDKs prove the scripted server speaks the real wire, the provider layer speaks it too."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import openai
import pytest

from agentry_llm import (
    ChatRequest,
    Message,
    ProviderError,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from agentry_llm.anthropic_provider import AnthropicProvider
from agentry_llm.openai_provider import OpenAIProvider
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.integration

SHELL = ToolSpec(
    name="shell",
    description="run",
    input_schema={"type": "object", "properties": {"command": {"type": "string"}}},
)
CONVERSATION = [
    Message(role="user", content=[TextBlock(text="list files")]),
    Message(
        role="assistant",
        content=[
            TextBlock(text="Listing."),
            ToolUseBlock(id="toolu_1", name="shell", input={"command": "ls"}),
        ],
    ),
    Message(role="user", content=[ToolResultBlock(tool_use_id="toolu_1", content="a.txt")]),
]
REQUEST = ChatRequest(system="be brief", messages=CONVERSATION, tools=[SHELL], max_tokens=256)


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


async def test_anthropic_streaming_text_and_tool_use(llm: ScriptedLLM) -> None:
    llm.script(
        [
            {
                "content": [
                    {"type": "text", "text": "I will read the file now, then summarise it."},
                    {
                        "type": "tool_use",
                        "id": "toolu_9",
                        "name": "shell",
                        "input": {"command": "cat a.txt", "nested": {"n": [1, 2]}},
                    },
                ],
                "usage": {"input_tokens": 321, "output_tokens": 54},
            }
        ]
    )
    provider = AnthropicProvider(
        model="claude-sonnet-4-6",
        api_key="sk-ant-wire",
        base_url=llm.url,
        default_headers={"x-agentry-correlation-id": "corr-9"},
    )
    deltas: list[str] = []
    response = await provider.complete(REQUEST, on_text=deltas.append)
    await provider.aclose()

    assert response.stop_reason == "tool_use"
    assert response.message.text() == "I will read the file now, then summarise it."
    assert "".join(deltas) == response.message.text() and len(deltas) > 1  # really streamed
    assert response.message.tool_uses() == [
        ToolUseBlock(id="toolu_9", name="shell", input={"command": "cat a.txt", "nested": {"n": [1, 2]}})
    ]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (321, 54)

    sent = llm.requests[0]
    assert sent.path == "/v1/messages" and sent.body["stream"] is True
    # The key travels as x-api-key or as a bearer token depending on the SDK version.
    auth = sent.headers.get("x-api-key") or sent.headers.get("authorization", "")
    assert auth.endswith("sk-ant-wire") and "anthropic-version" in sent.headers
    assert sent.headers["x-agentry-correlation-id"] == "corr-9"
    assert sent.body["system"] == "be brief" and sent.body["model"] == "claude-sonnet-4-6"
    assert sent.body["tools"][0]["input_schema"]["properties"]["command"] == {"type": "string"}
    assert sent.body["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "a.txt",
        "is_error": False,
    }


async def test_openai_streaming_tool_calls_and_message_mapping(llm: ScriptedLLM) -> None:
    llm.script(
        [
            {
                "tool_uses": [
                    {"name": "shell", "input": {"command": "ls -la"}},
                    {"name": "shell", "input": {"command": "pwd"}},
                ],
                "usage": {"input_tokens": 77, "output_tokens": 11},
            },
            {"text": "Done: two files.", "usage": {"input_tokens": 80, "output_tokens": 5}},
        ]
    )
    provider = OpenAIProvider(model="gpt-4.1-mini", api_key="sk-oa", base_url=llm.openai_url)
    first = await provider.complete(REQUEST)
    second = await provider.complete(REQUEST)
    await provider.aclose()

    assert first.stop_reason == "tool_use"
    assert [(u.name, u.input) for u in first.message.tool_uses()] == [
        ("shell", {"command": "ls -la"}),
        ("shell", {"command": "pwd"}),
    ]
    assert (first.usage.input_tokens, first.usage.output_tokens) == (77, 11)
    assert second.stop_reason == "end_turn" and second.message.text() == "Done: two files."

    body = llm.requests[0].body
    assert llm.requests[0].path == "/v1/chat/completions"
    assert llm.requests[0].headers["authorization"] == "Bearer sk-oa"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 256  # a custom base URL gets the widely supported name
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "shell",
        "arguments": json.dumps({"command": "ls"}),
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a.txt"}
    assert body["tools"][0]["function"]["name"] == "shell"


def test_non_streaming_responses_parse_with_the_plain_sdk_calls(llm: ScriptedLLM) -> None:
    llm.script([{"text": "plain anthropic"}, {"tool_use": {"name": "f", "input": {"x": 1}}}])
    ac = anthropic.Anthropic(api_key="k", base_url=llm.url, max_retries=0)
    msg = ac.messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "plain anthropic"
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens > 0
    oc = openai.OpenAI(api_key="k", base_url=llm.openai_url, max_retries=0)
    done = oc.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    call = done.choices[0].message.tool_calls
    assert call is not None and call[0].type == "function"
    assert call[0].function.name == "f" and json.loads(call[0].function.arguments) == {"x": 1}
    assert done.choices[0].finish_reason == "tool_calls" and done.usage is not None


ERRORS = [
    ({"error": {"status": 529}}, 529, True, None),
    ({"error": {"status": 500}}, 500, True, None),
    ({"error": {"status": 429, "retry_after": 2}}, 429, True, 2.0),
    ({"error": {"status": 400, "message": "prompt too long"}}, 400, False, None),
    ({"error": {"status": 401}}, 401, False, None),
]
# An `error` event inside a 200 stream exists only in the Anthropic protocol.
STREAM_ERROR = ({"stream_error": {"type": "overloaded_error"}}, 200, True, None)


@pytest.mark.parametrize(
    ("kind", "item", "status", "retryable", "retry_after"),
    [("anthropic", *e) for e in [*ERRORS, STREAM_ERROR]] + [("openai", *e) for e in ERRORS],
)
async def test_errors_are_normalised(
    llm: ScriptedLLM,
    kind: str,
    item: dict[str, object],
    status: int,
    retryable: bool,
    retry_after: float | None,
) -> None:
    llm.script([item])
    provider = (
        AnthropicProvider(model="claude-sonnet-4-6", api_key="k", base_url=llm.url)
        if kind == "anthropic"
        else OpenAIProvider(model="gpt-4.1", api_key="k", base_url=llm.openai_url)
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(REQUEST)
    await provider.aclose()
    err = info.value
    assert (err.status, err.retryable, err.retry_after) == (status, retryable, retry_after)
    if status == 400:
        assert "prompt too long" in err.message


def test_scripted_llm_runs_as_a_process(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "from the file"}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentry_testing.scripted_llm", "--port", "0", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("scripted LLM listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        client = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        reply = client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "q"}]
        )
        assert reply.content[0].type == "text" and reply.content[0].text == "from the file"
        # Out-of-process control: queue more, read what was received.
        assert localhttp.post(f"{url}/_script", json=[{"text": "second"}]).json() == {"queued": 1}
        recorded = localhttp.get(f"{url}/_requests").json()
        assert recorded[0]["body"]["messages"] == [{"role": "user", "content": "q"}]
        second = localhttp.post(f"{url}/v1/messages", json={"model": "m", "messages": []})
        assert second.json()["content"] == [{"type": "text", "text": "second"}]
        exhausted = localhttp.post(f"{url}/v1/messages", json={"model": "m", "messages": []})
        assert exhausted.status_code == 400 and "exhausted" in exhausted.json()["error"]["message"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


class _NotAStream(BaseHTTPRequestHandler):
    """A server that answers a streamed call with a plain page (a proxy's, a misconfigured URL)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b"<html>hello from a proxy</html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_an_answer_that_is_not_an_event_stream_is_a_provider_error(kind: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotAStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    provider = (
        AnthropicProvider(model="claude-sonnet-4-6", api_key="k", base_url=url)
        if kind == "anthropic"
        else OpenAIProvider(model="gpt-4.1", api_key="k", base_url=url)
    )
    try:
        with pytest.raises(ProviderError) as info:
            await provider.complete(REQUEST)
    finally:
        await provider.aclose()
        server.shutdown()
    assert "not an event stream" in info.value.message and not info.value.retryable
