"""What the scripted LLM (scripted_llm.py) answers, in each wire protocol: the JSON bodies and the
server-sent events of the Anthropic Messages and OpenAI chat completions APIs. Pure functions: the
server decides what to answer and writes what these return."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# One server-sent event: its name (None: a bare `data:` line, as OpenAI sends) and its data.
Event = tuple[str | None, Any]

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


@dataclass(frozen=True)
class InputUsage:
    """The input side of one answer. `input_tokens` counts all input; the cache fields are parts of it
    (agentry_llm.TokenUsage's convention)."""

    input_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # any TTL
    cache_write_1h_tokens: int = 0  # of cache_write_tokens

    @property
    def uncached_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


@dataclass(frozen=True)
class Answer:
    """One scripted answer, whichever protocol carries it."""

    id: str
    model: str
    blocks: list[dict[str, Any]]  # {"type": "text", "text"} and {"type": "tool_use", "id", "name", "input"}
    stop_reason: str  # Anthropic's words: end_turn, tool_use, max_tokens
    usage: InputUsage
    output_tokens: int


def answer_blocks(item: dict[str, Any], next_id: Callable[[], int], id_prefix: str) -> list[dict[str, Any]]:
    """The content blocks a script item answers with (scripted_llm.py's item forms)."""
    if "content" in item:
        raw = list(item["content"])
    else:
        raw = []
        if "text" in item:
            raw.append({"type": "text", "text": item["text"]})
        uses = item.get("tool_uses") or ([item["tool_use"]] if "tool_use" in item else [])
        raw.extend({"type": "tool_use", **u} for u in uses)
    blocks = []
    for block in raw:
        if block.get("type") == "tool_use":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": block.get("id") or f"{id_prefix}{next_id():04d}",
                    "name": block["name"],
                    "input": block.get("input", {}),
                }
            )
        else:
            blocks.append({"type": "text", "text": str(block.get("text", ""))})
    return blocks


def chunks(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _retry_after(err: dict[str, Any]) -> dict[str, str]:
    return {"retry-after": str(err["retry_after"])} if err.get("retry_after") is not None else {}


# -- Anthropic Messages ---------------------------------------------------------------------------


def anthropic_error(err: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a scripted error."""
    status = int(err.get("status", 500))
    err_type = err.get("type") or _ANTHROPIC_ERRORS.get(status, "api_error")
    payload = {
        "type": "error",
        "error": {"type": err_type, "message": err.get("message", f"scripted {status}")},
    }
    return status, payload, _retry_after(err)


def anthropic_usage(answer: Answer, output_tokens: int | None = None) -> dict[str, Any]:
    """Usage as the Messages API reports it: `input_tokens` only what no cache read or wrote."""
    used = answer.usage
    write_1h = used.cache_write_1h_tokens
    return {
        "input_tokens": used.uncached_tokens,
        "cache_creation_input_tokens": used.cache_write_tokens,
        "cache_read_input_tokens": used.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": used.cache_write_tokens - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": answer.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def anthropic_message(answer: Answer) -> dict[str, Any]:
    return {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": answer.blocks,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(answer),
    }


def anthropic_events(answer: Answer, stream_error: dict[str, Any] | None = None) -> list[Event]:
    """The stream of an answer; with `stream_error`, one that fails right after message_start."""
    start = {**anthropic_message(answer), "content": [], "stop_reason": None}
    start["usage"] = anthropic_usage(answer, output_tokens=1)
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    if stream_error is not None:
        error = {
            "type": stream_error.get("type", "overloaded_error"),
            "message": stream_error.get("message", "Overloaded"),
        }
        return [*events, ("error", {"type": "error", "error": error})]
    for index, block in enumerate(answer.blocks):
        events += _anthropic_block_events(index, block)
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                # Cumulative counts, the input's included (the SDKs keep message_start's otherwise).
                "usage": {k: v for k, v in anthropic_usage(answer).items() if isinstance(v, int)},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _anthropic_block_events(index: int, block: dict[str, Any]) -> list[Event]:
    """One content block: its start, deltas (text in small pieces, tool input JSON in two halves), stop."""
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in chunks(block["text"])]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = json.dumps(block["input"])
        half = len(raw) // 2
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in (raw[:half], raw[half:])]
    return [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
        *(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            for delta in deltas
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


# -- OpenAI chat completions ----------------------------------------------------------------------


def openai_error(err: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers of a scripted error."""
    status = int(err.get("status", 500))
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    if 400 <= status < 500 and status != 429:
        kind = "invalid_request_error"
    payload = {
        "error": {
            "message": err.get("message", f"scripted {status}"),
            "type": err.get("type", kind),
            "param": None,
            "code": None,
        }
    }
    return status, payload, _retry_after(err)


def openai_usage(answer: Answer) -> dict[str, Any]:
    """`prompt_tokens` counts all input; the cached part is `prompt_tokens_details.cached_tokens`."""
    return {
        "prompt_tokens": answer.usage.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.usage.input_tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.usage.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _text_and_calls(answer: Answer) -> tuple[str, list[dict[str, Any]]]:
    text = "".join(b["text"] for b in answer.blocks if b["type"] == "text")
    return text, [b for b in answer.blocks if b["type"] == "tool_use"]


def openai_completion(answer: Answer, created: int) -> dict[str, Any]:
    text, calls = _text_and_calls(answer)
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["input"])},
            }
            for c in calls
        ]
    finish = _OPENAI_FINISH.get(answer.stop_reason, "stop")
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": openai_usage(answer),
    }


def openai_events(answer: Answer, created: int, include_usage: bool) -> list[Event]:
    """The chunks of a streamed completion: text in small pieces, each tool call's arguments in two
    halves, the finish reason, the usage chunk when asked for, and [DONE]."""
    head = {"id": answer.id, "object": "chat.completion.chunk", "created": created, "model": answer.model}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> Event:
        return (None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

    text, calls = _text_and_calls(answer)
    events = [chunk({"role": "assistant", "content": ""})]
    if text:
        events += [chunk({"content": part}) for part in chunks(text)]
    for index, call in enumerate(calls):
        raw = json.dumps(call["input"])
        half = len(raw) // 2
        first: dict[str, Any] = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["name"], "arguments": raw[:half]},
        }
        events.append(chunk({"tool_calls": [first]}))
        events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": raw[half:]}}]}))
    events.append(chunk({}, _OPENAI_FINISH.get(answer.stop_reason, "stop")))
    if include_usage:
        events.append((None, {**head, "choices": [], "usage": openai_usage(answer)}))
    events.append((None, "[DONE]"))
    return events
