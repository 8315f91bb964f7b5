"""A scripted LLM server speaking the Anthropic Messages and OpenAI chat completions wire protocols.

Tests (and pods, later) point the real SDKs at it through their base URL. Each request takes the
next scripted response from one queue, whichever protocol asked; every request is recorded.

    with ScriptedLLM() as llm:
        llm.script([{"error": {"status": 529}}, {"tool_use": {"name": "shell", "input": {...}}},
                    {"text": "done", "usage": {"input_tokens": 120, "output_tokens": 30}}])
        ... ANTHROPIC_BASE_URL=llm.url, OPENAI_BASE_URL=llm.openai_url ...
        llm.requests[0].body["messages"]

As a process: `python -m agentry_testing.scripted_llm --port N --script file.json` (a JSON list of
items). Control endpoints for out-of-process use: POST /_script (append items), GET /_requests,
POST /_reset.

Script items (JSON objects):
  {"text": "..."}                                   a text answer
  {"tool_use": {"name": ..., "input": {...}, "id": optional}}   (or "tool_uses": [...])
  {"content": [{"type": "text", ...}, {"type": "tool_use", ...}]}   explicit blocks
    optional on the above: "stop_reason", "model", "usage" in the Messages API's words:
    {"input_tokens" (not read from or written to a cache), "output_tokens",
     "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation": {...}}
  {"error": {"status": 529, "type": optional, "message": optional, "retry_after": optional}}
  {"stream_error": {"type": "overloaded_error"}}    a 200 stream that fails after message_start
  any item: "delay": seconds before answering, "repeat": n (use the item n times),
    "match": text — served only to a request whose messages contain it (the first item that matches
    or has no "match" is taken), so runs that call concurrently each get their own answers;
    "match_last": the same, on the request's last message only; "keep": true — the item stays in the
    queue (answers every request it matches: a call a lost pod made is answered the same again)
An empty queue answers 400 "script exhausted", so a test that under-scripts fails loudly.

Usage not scripted is what the provider would report (scripted_cache.py): input tokens at about
four characters of JSON each, read from and written to a prompt cache by the provider's own rules
(Anthropic: `cache_control` breakpoints, a request with more than 4 answered 400; OpenAI: automatic),
per API key and model, on a clock tests can move (`ScriptedLLM(clock=ManualClock())`). With
`prefill_ms_per_1k` it waits that many milliseconds per 1,000 input tokens not read from a cache
before the first byte, as a model computes them. Each recorded request keeps the usage answered.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from . import scripted_wire as wire
from .scripted_cache import (
    AnthropicCache,
    CacheError,
    Clock,
    OpenAICache,
    anthropic_pieces,
    api_key,
    prefill_seconds,
    scripted_input,
    tokens_of,
)
from .scripted_wire import Answer, Event, InputUsage


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    usage: dict[str, Any] | None = None  # what the answer reported, in its protocol's words
    at: float = field(default_factory=time.time)  # when it arrived (wall clock, as the cluster's stamps)

    @property
    def protocol(self) -> str:
        return "openai" if self.path.endswith("/chat/completions") else "anthropic"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _State:
    def __init__(self, clock: Clock, prefill_ms_per_1k: float) -> None:
        self.lock = threading.Lock()
        self.queue: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.ids = itertools.count(1)
        self.anthropic_cache = AnthropicCache(clock)
        self.openai_cache = OpenAICache(clock)
        self.prefill_ms_per_1k = prefill_ms_per_1k

    def reset(self) -> None:
        with self.lock:
            self.queue.clear()
            self.requests.clear()
        self.anthropic_cache.clear()
        self.openai_cache.clear()

    def push(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            for item in items:
                if not isinstance(item, dict):
                    raise ValueError(f"script items must be objects, got {item!r}")
                repeat = int(item.get("repeat", 1))
                self.queue.extend(dict(item) for _ in range(repeat))

    def pop(self, request: Any = None) -> dict[str, Any] | None:
        """The first item for this request: one without "match"/"match_last", or whose text is in its
        messages (its last message)."""
        messages = request.get("messages") if isinstance(request, dict) else None
        text = json.dumps(messages, ensure_ascii=False) if messages is not None else ""
        last = json.dumps(messages[-1], ensure_ascii=False) if isinstance(messages, list) and messages else ""
        with self.lock:
            for index, item in enumerate(self.queue):
                match, match_last = item.get("match"), item.get("match_last")
                if (match is None or str(match) in text) and (match_last is None or str(match_last) in last):
                    return dict(item) if item.get("keep") else self.queue.pop(index)
            return None

    def next_id(self) -> int:
        with self.lock:
            return next(self.ids)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Every write (headers, each chunk, the last chunk) is its own send: with Nagle's algorithm a small
    # send waits for the peer's ACK of the previous one, which a client delays up to 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests assert on recorded requests instead

    # -- plumbing ---------------------------------------------------------------------------

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_scripted_{self.server.state.next_id():06d}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_scripted_{self.server.state.next_id():06d}")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sse(self, event: str | None, data: Any) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self._chunk(f"{head}data: {payload}\n\n".encode())

    # -- routing ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/_requests":
            with self.server.state.lock:
                reqs = [r.to_json() for r in self.server.state.requests]
            self._send_json(200, reqs)
        elif self.path.rstrip("/") in ("", "/healthz"):
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0].rstrip("/")
        state = self.server.state
        if path == "/_script":
            state.push(list(body or []))
            self._send_json(200, {"queued": len(state.queue)})
            return
        if path == "/_reset":
            state.reset()
            self._send_json(200, {"ok": True})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded = RecordedRequest("POST", path, headers, body)
        with state.lock:
            state.requests.append(recorded)
        if not path.endswith(("/messages", "/chat/completions")):
            self._send_json(404, {"error": {"message": f"unknown path {path}"}})
            return
        request = body if isinstance(body, dict) else {}
        try:
            if path.endswith("/messages"):
                anthropic_pieces(request)  # refused as the API refuses it, before any script item
        except CacheError as err:
            self._send_json(*wire.anthropic_error({"status": 400, "message": str(err)}))
            return
        item = state.pop(body)
        if item is None:
            item = {"error": {"status": 400, "message": "scripted LLM: script exhausted"}}
        try:
            if item.get("delay"):
                time.sleep(float(item["delay"]))
            if path.endswith("/messages"):
                self._anthropic(request, item, recorded)
            else:
                self._openai(request, item, recorded)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (deadline, cancellation): nothing to answer

    def _send_events(self, events: list[Event]) -> None:
        self._start_stream()
        for event, data in events:
            self._sse(event, data)
        self._end_stream()

    def _answer(
        self, request: dict[str, Any], item: dict[str, Any], served: InputUsage, tool_ids: str, ids: str
    ) -> Answer:
        """The item as an answer to this request, with its input usage; its model time spent."""
        state = self.server.state
        blocks = wire.answer_blocks(item, state.next_id, tool_ids)
        model = item.get("model") or request.get("model", "scripted")
        scripted = item.get("usage") or {}
        output_tokens = int(scripted.get("output_tokens", max(1, tokens_of(len(json.dumps(blocks))))))
        has_tool = any(b["type"] == "tool_use" for b in blocks)
        stop_reason = item.get("stop_reason") or ("tool_use" if has_tool else "end_turn")
        if state.prefill_ms_per_1k:
            time.sleep(prefill_seconds(served, state.prefill_ms_per_1k))
        return Answer(
            ids.format(state.next_id()),
            model,
            blocks,
            stop_reason,
            served,
            output_tokens,
        )

    def _anthropic(self, request: dict[str, Any], item: dict[str, Any], recorded: RecordedRequest) -> None:
        if "error" in item:
            self._send_json(*wire.anthropic_error(item["error"]))
            return
        cache, key = self.server.state.anthropic_cache, api_key(recorded.headers)
        served = scripted_input(item.get("usage") or {}, lambda: cache.serve(request, key))
        answer = self._answer(request, item, served, "toolu_scripted_", "msg_scripted_{:06d}")
        recorded.usage = wire.anthropic_usage(answer)  # before the answer: a client may read it next
        if not request.get("stream"):
            self._send_json(200, wire.anthropic_message(answer))
        else:
            self._send_events(wire.anthropic_events(answer, item.get("stream_error")))

    def _openai(self, request: dict[str, Any], item: dict[str, Any], recorded: RecordedRequest) -> None:
        if "error" in item or "stream_error" in item:
            self._send_json(*wire.openai_error(item.get("error") or {"status": 500}))
            return
        cache, key = self.server.state.openai_cache, api_key(recorded.headers)
        served = scripted_input(item.get("usage") or {}, lambda: cache.serve(request, key))
        answer = self._answer(request, item, served, "call_scripted_", "chatcmpl-scripted{:06d}")
        recorded.usage = wire.openai_usage(answer)
        created = int(time.time())
        if not request.get("stream"):
            self._send_json(200, wire.openai_completion(answer, created))
        else:
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._send_events(wire.openai_events(answer, created, include_usage))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A burst of hundreds of connections (benchmarks) must queue, not be reset: the default backlog is 5.
    request_queue_size = 1024
    state: _State


class ScriptedLLM:
    """The server in a background thread; a context manager for tests."""

    def __init__(
        self,
        script: list[dict[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock = time.monotonic,
        prefill_ms_per_1k: float = 0.0,
    ) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.state = _State(clock, prefill_ms_per_1k)
        self._thread: threading.Thread | None = None
        if script:
            self.script(script)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for the Anthropic SDK (it appends /v1/messages)."""
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI SDK (it appends /chat/completions)."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._server.state.lock:
            return list(self._server.state.requests)

    @property
    def pending(self) -> int:
        """Scripted responses not consumed yet."""
        with self._server.state.lock:
            return len(self._server.state.queue)

    def script(self, items: list[dict[str, Any]]) -> ScriptedLLM:
        """Append responses to the queue."""
        self._server.state.push(items)
        return self

    def reset(self) -> None:
        """Forget the queue, the recorded requests and the prompt caches."""
        self._server.state.reset()

    def start(self) -> ScriptedLLM:
        # A short poll interval keeps stop() fast (tests start one server each).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentry_testing.scripted_llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON file with a list of script items")
    parser.add_argument(
        "--prefill-ms-per-1k",
        type=float,
        default=0.0,
        help="milliseconds before the first byte per 1,000 input tokens not read from a cache",
    )
    args = parser.parse_args(argv)
    items = json.loads(args.script.read_text()) if args.script else []
    llm = ScriptedLLM(items, host=args.host, port=args.port, prefill_ms_per_1k=args.prefill_ms_per_1k)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever, so it must run on another thread.
        threading.Thread(target=llm._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"scripted LLM listening on {llm.url}", flush=True)
    llm.serve_forever()
    llm._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
