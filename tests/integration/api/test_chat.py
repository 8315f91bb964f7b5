"""The chat designer over a WebSocket, with the shared provider layer (agentry_llm, the real
`anthropic` SDK) talking to a local server that speaks the Messages API; and the plain LLM_REQUIRED
answer when no key is configured."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.cloud import firestore
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from agentry_localcluster.kube import ControlPlane

from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration

API_KEY = "sk-ant-test-" + "k" * 24
DRAFT = {
    "name": "Stock digest",
    "description": "Weekly stock summary",
    "instructions": "Every Monday, summarise last week's stock news in five bullets.",
    "tools": ["files"],
    "schedule": {"cron": "0 8 * * 1", "timeZone": "Asia/Seoul"},
    "budget": {"maxTurns": 10, "maxCostPerRunUSD": "1.00"},
}


class FakeAnthropic:
    """Answers POST /v1/messages from a script, recording every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                status, payload = fake.script.pop(0) if fake.script else (400, _error("script exhausted"))
                if status == 200 and body.get("stream"):  # the provider layer streams (agentry_llm)
                    data, kind = _as_stream(payload), "text/event-stream"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def answer(self, text: str) -> None:
        self.script.append(
            (
                200,
                {
                    "id": f"msg_{len(self.script)}",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 120, "output_tokens": 80},
                },
            )
        )


def _as_stream(message: dict[str, Any]) -> bytes:
    """A Messages API answer as the server-sent events of a streamed one."""
    usage = message["usage"]
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                **message,
                "content": [],
                "stop_reason": None,
                "usage": {**usage, "output_tokens": 1},
            },
        }
    ]
    for index, block in enumerate(message["content"]):
        events += [
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "text_delta", "text": block["text"]},
            },
            {"type": "content_block_stop", "index": index},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
def llm() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.http.shutdown()


@pytest.fixture
def chat_api(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator_ready: None,
    llm: FakeAnthropic,
) -> Iterator[ApiServer]:
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        anthropic_api_key=API_KEY,
        anthropic_base_url=llm.url,
    )
    yield from serve(settings)


def open_chat(api: ApiServer, cookies: Any, query: str = "") -> ClientConnection:
    cookie = f"agentry_session={cookies['agentry_session']}"
    return ws_connect(
        api.url.replace("http", "ws") + "/api/chat" + query, additional_headers={"Cookie": cookie}
    )


def frame(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=30))
    return data


def test_without_a_key_the_chat_says_llm_required(api: ApiServer) -> None:
    c = api.guest()
    with open_chat(api, c.cookies) as ws:
        hello = frame(ws)
        assert hello["type"] == "hello" and hello["llm"] is False
        err = frame(ws)
        assert err["code"] == "LLM_REQUIRED" and "ANTHROPIC_API_KEY" in err["message"]
        ws.send(json.dumps({"type": "message", "text": "make me an agent"}))
        assert frame(ws)["code"] == "LLM_REQUIRED"
        ws.send("not json")
        with pytest.raises(ConnectionClosed):  # closed: frames must be JSON
            frame(ws)


def test_a_conversation_becomes_a_validated_draft_and_an_agent(
    chat_api: ApiServer, llm: FakeAnthropic
) -> None:
    c = chat_api.guest()
    llm.answer("What should the agent do, and how often?")
    llm.answer("Here is a draft:\n```json\n" + json.dumps(DRAFT) + "\n```\nShall I save it?")
    with open_chat(chat_api, c.cookies) as ws:
        hello = frame(ws)
        assert hello["llm"] is True and hello["messages"] == []
        ws.send(json.dumps({"type": "save"}))
        assert frame(ws)["code"] == "INVALID"  # nothing to save yet
        ws.send(json.dumps({"type": "message", "text": "I want a stock news agent"}))
        reply = frame(ws)
        assert reply["type"] == "message" and reply["text"].startswith("What should")
        ws.send(json.dumps({"type": "message", "text": "Weekly, Mondays 8am Seoul"}))
        assert frame(ws)["type"] == "message"
        draft = frame(ws)
        assert draft["type"] == "draft" and draft["valid"] is True, draft
        changed = {d["field"]: d for d in draft["diff"]}
        assert changed["instructions"]["before"] is None
        assert changed["schedule"]["after"]["cron"] == "0 8 * * 1"
        ws.send(json.dumps({"type": "save"}))
        saved = frame(ws)
        assert saved["type"] == "saved" and saved["agent"]["name"] == "Stock digest"
        conversation = hello["conversation"]

    agents = c.get("/api/agents").json()["items"]
    assert [a["id"] for a in agents] == [saved["agent"]["id"]]
    assert agents[0]["spec"]["schedule"]["timeZone"] == "Asia/Seoul"

    # The SDK spoke the Messages API to our server with the configured key and the whole history.
    assert [r["path"] for r in llm.requests] == ["/v1/messages", "/v1/messages"]
    sent = llm.requests[0]["headers"]  # SDK 2.x sends the key as a bearer token
    assert API_KEY in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))
    last = llm.requests[1]["body"]
    assert [m["role"] for m in last["messages"]] == ["user", "assistant", "user"]
    assert "agent" in last["system"] and last["model"] == "claude-sonnet-4-6"

    # The conversation is stored (roles, content, parts); the key is stored nowhere.
    db = firestore.Client(project=chat_api.settings.google_cloud_project)
    doc = db.collection("conversations").document(conversation).get().to_dict()
    assert [m["role"] for m in doc["messages"]] == ["user", "assistant", "user", "assistant"]
    assert doc["messages"][-1]["parts"] == [{"type": "draft", "valid": True}]
    assert doc["agentId"] == saved["agent"]["id"]
    for collection in ("conversations", "agents", "users", "events"):
        for d in db.collection(collection).stream():
            assert API_KEY not in json.dumps(d.to_dict(), default=str), collection

    # Editing: a new conversation about the saved agent diffs against it.
    llm.answer("```json\n" + json.dumps({**DRAFT, "tools": ["teleport"]}) + "\n```")
    llm.answer("```json\n" + json.dumps({**DRAFT, "description": "Daily now"}) + "\n```")
    with open_chat(chat_api, c.cookies, f"?agent={saved['agent']['id']}") as ws:
        frame(ws)
        ws.send(json.dumps({"type": "message", "text": "give it teleport"}))
        frame(ws)
        bad = frame(ws)
        assert bad["valid"] is False and any("tools" in map(str, e["loc"]) for e in bad["errors"])
        ws.send(json.dumps({"type": "message", "text": "make it daily"}))
        frame(ws)
        good = frame(ws)
        assert good["valid"] and [d["field"] for d in good["diff"]] == ["description"]
        ws.send(json.dumps({"type": "save"}))
        assert frame(ws)["agent"]["description"] == "Daily now"


def test_provider_errors_are_reported_plainly(chat_api: ApiServer, llm: FakeAnthropic) -> None:
    c = chat_api.guest()
    llm.script.append((401, _error("invalid x-api-key", "authentication_error")))
    with open_chat(chat_api, c.cookies) as ws:
        frame(ws)
        ws.send(json.dumps({"type": "message", "text": "hello"}))
        err = frame(ws)
        assert err["code"] == "LLM_ERROR" and "refused the API key" in err["message"]
        assert API_KEY not in json.dumps(err)
    # Another user cannot resume this conversation.
    other = chat_api.guest()
    with (
        open_chat(chat_api, other.cookies, "?conversation=" + "0" * 32) as ws,
        pytest.raises(ConnectionClosed),
    ):
        frame(ws)
