"""Both protocols through a real gateway, called the way the runtime calls it (the provider layer over
the real SDKs), with scripted upstream providers; streaming and not; cross-protocol routing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from agentry_gateway.app import create_app
from agentry_llm import ChatRequest, Message, TextBlock, ToolChoice
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import (
    ANTHROPIC_KEY,
    KEYRING,
    OPENAI_KEY,
    GatewayServer,
    ask,
    chain,
    complete,
    config,
    post,
    run_token,
    sent_key,
    settings,
    svc_headers,
)

pytestmark = pytest.mark.integration

ANSWER = {
    "text": "Here is a longer answer that the scripted server streams in several chunks.",
    "tool_use": {"name": "shell", "input": {"cmd": "ls -la"}},
    "usage": {"input_tokens": 1200, "output_tokens": 80},
}


def test_anthropic_streaming_through_the_runtime_provider(llm: ScriptedLLM) -> None:
    llm.script([ANSWER])
    with GatewayServer(settings(), config(llm)) as gw:
        provider_chain, events = chain(gw.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
        response, streamed = asyncio.run(complete(provider_chain))
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]

    assert streamed == ANSWER["text"]  # relayed as it arrived
    assert response.message.text() == ANSWER["text"]
    [tool] = response.message.tool_uses()
    assert (tool.name, tool.input) == ("shell", {"cmd": "ls -la"})
    assert response.stop_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1200, 80)
    assert events == []
    # The upstream saw the gateway's key, never the run token; the body is the runtime's request.
    [upstream] = llm.requests
    assert sent_key(upstream.headers) == ANTHROPIC_KEY
    assert upstream.body["model"] == "claude-sonnet-4-6" and upstream.body["stream"] is True
    assert upstream.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert record["outcome"] == "ok" and record["model"] == "claude-sonnet-4-6"
    assert (record["inputTokens"], record["outputTokens"]) == (1200, 80)
    assert record["charged"]["costUSD"] == "0.0048"  # 1200 * $3/M + 80 * $15/M


def test_anthropic_wire_events_and_headers(llm: ScriptedLLM) -> None:
    llm.script([ANSWER, {"text": "plain", "usage": {"input_tokens": 5, "output_tokens": 1}}])
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "stream": True,
        "metadata": {"user_id": "x"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    with GatewayServer(settings(), config(llm)) as gw:
        with httpx.stream(
            "POST", f"{gw.url}/v1/messages", json=body, headers={"x-api-key": run_token()}, timeout=30
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            headers = response.headers
            names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
        plain = post(gw.url, "/v1/messages", run_token(), {**body, "stream": False})
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 2
    assert headers["x-agentry-model"] == "claude-sonnet-4-6" and headers["x-agentry-channel"] == "anthropic"
    assert headers["x-agentry-decision"] == "allow" and headers["x-agentry-dropped"] == "metadata"
    assert plain.status_code == 200
    data = plain.json()
    assert data["type"] == "message" and data["content"] == [{"type": "text", "text": "plain"}]
    assert data["usage"] == {
        "input_tokens": 5,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }


def test_openai_streaming_and_not(llm: ScriptedLLM) -> None:
    llm.script([ANSWER, {"text": "second", "usage": {"input_tokens": 9, "output_tokens": 2}}])
    with GatewayServer(settings(), config(llm)) as gw:
        provider_chain, _ = chain(gw.url, run_token(), [("openai", "gpt-4.1-mini")])
        response, streamed = asyncio.run(complete(provider_chain))
        plain = post(
            gw.url,
            "/v1/chat/completions",
            None,
            {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "x"}]},
            authorization=f"Bearer {run_token()}",
        )
    assert streamed == ANSWER["text"] and response.message.tool_uses()[0].input == {"cmd": "ls -la"}
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1200, 80)
    assert sent_key(llm.requests[0].headers) == OPENAI_KEY
    assert llm.requests[0].path == "/v1/chat/completions"
    assert plain.status_code == 200
    choice = plain.json()["choices"][0]
    assert choice["message"]["content"] == "second" and choice["finish_reason"] == "stop"
    assert plain.json()["usage"]["total_tokens"] == 11


def test_sampling_parameters_are_relayed(llm: ScriptedLLM) -> None:
    llm.script([{"text": "a"}, {"text": "b"}])
    request = ChatRequest(
        system="s",
        messages=[Message(role="user", content=[TextBlock(text="x")])],
        temperature=0.3,
        stop_sequences=["END"],
        tool_choice=ToolChoice(type="auto"),
        max_tokens=50,
    )
    with GatewayServer(settings(), config(llm)) as gw:
        for refs in ([("anthropic", "claude-sonnet-4-6")], [("openai", "gpt-4.1-mini")]):
            provider_chain, _ = chain(gw.url, run_token(), refs)
            asyncio.run(complete(provider_chain, request))
    anthropic_body, openai_body = (r.body for r in llm.requests)
    assert anthropic_body["temperature"] == 0.3 and anthropic_body["stop_sequences"] == ["END"]
    assert anthropic_body["tool_choice"] == {"type": "auto"} and anthropic_body["max_tokens"] == 50
    assert openai_body["temperature"] == 0.3 and openai_body["stop"] == ["END"]
    assert openai_body["tool_choice"] == "auto"


def test_an_anthropic_client_can_be_routed_to_an_openai_channel(
    llm: ScriptedLLM, backup: ScriptedLLM
) -> None:
    backup.script(
        [{"text": "from the openai-compatible channel", "usage": {"input_tokens": 3, "output_tokens": 4}}]
    )
    cfg = config(
        llm, backup, routes=[{"model": "local-*", "chain": [{"channel": "openai", "model": "qwen-7b"}]}]
    )
    with GatewayServer(settings(), cfg) as gw:
        provider_chain, _ = chain(gw.url, run_token(), [("anthropic", "local-fast")])
        response, streamed = asyncio.run(complete(provider_chain))
    assert streamed == response.message.text() == "from the openai-compatible channel"
    assert backup.requests[0].body["model"] == "qwen-7b" and not llm.requests
    assert backup.requests[0].body["messages"][0] == {"role": "system", "content": "You are a test."}


def test_unsupported_content_and_unknown_models_are_clear_errors(llm: ScriptedLLM) -> None:
    cfg = config(llm).model_copy(update={"defaults": {}})
    cfg = cfg.model_copy(update={"channels": [c for c in cfg.channels if c.name == "anthropic"]})
    with GatewayServer(settings(), cfg) as gw:
        image = post(
            gw.url,
            "/v1/messages",
            run_token(),
            {
                "model": "claude-sonnet-4-6",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}],
            },
        )
        unknown = post(
            gw.url,
            "/v1/chat/completions",
            run_token(),
            {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]},
        )
        not_json = localhttp.post(f"{gw.url}/v1/messages", content=b"{", headers={"x-api-key": run_token()})
    assert image.status_code == 400
    assert image.json()["error"]["type"] == "invalid_request_error"
    assert "'image' is not relayed" in image.json()["error"]["message"]
    assert unknown.status_code == 404 and "no openai channel" in unknown.json()["error"]["message"]
    assert not_json.status_code == 400
    assert not llm.requests


def test_auto_model_is_routed_by_complexity_with_an_explanation(llm: ScriptedLLM) -> None:
    llm.script([{"text": "short"}, {"text": "deep"}])
    with GatewayServer(settings(), config(llm)) as gw:
        easy = post(
            gw.url,
            "/v1/messages",
            run_token(priority=2),
            {
                "model": "auto",
                "max_tokens": 100,
                "messages": [{"role": "user", "content": "Summarize and list it"}],
            },
        )
        hard_text = "Design the architecture, analyze the trade-offs and plan the migration. " + "x" * 25_000
        hard = post(
            gw.url,
            "/v1/messages",
            run_token(priority=9),
            {"model": "auto", "max_tokens": 16000, "messages": [{"role": "user", "content": hard_text}]},
        )
        gw.drain()
        records = list(gw.gateway.ledger.calls)  # type: ignore[attr-defined]
    assert easy.headers["x-agentry-model"] == "claude-haiku-4-5"
    assert easy.headers["x-agentry-route"].startswith("light")
    assert hard.headers["x-agentry-model"] == "claude-opus-4-6"
    assert [r.body["model"] for r in llm.requests] == ["claude-haiku-4-5", "claude-opus-4-6"]
    assert records[1]["route"]["tier"] == "strong" and "complexity" in records[1]["route"]["reason"]


def test_the_default_request_shape(llm: ScriptedLLM) -> None:
    """Sanity: the harness' request is what the runtime sends (system + one user message)."""
    assert ask().messages[0].text() == "hello"


async def test_mounted_inside_another_app(llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-line mount into the API: the gateway builds its state on the first request."""
    llm.script([{"text": "mounted", "usage": {"input_tokens": 3, "output_tokens": 1}}])
    host = FastAPI()
    host.mount("/llm", create_app(settings(), config=config(llm), keyring=KEYRING))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        channels = await client.get("/llm/channels", headers=svc_headers())
        answer = await client.post(
            "/llm/v1/messages",
            json={
                "model": "claude-sonnet-4-6",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": run_token()},
        )
    assert [c["name"] for c in channels.json()["channels"]] == ["anthropic", "openai"]
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "mounted"
