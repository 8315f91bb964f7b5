"""The upstream call in its own task, and its answer relayed to the client as it arrives.

Streaming: the response status is decided when the first text arrives (or the call ends), so an
upstream failure before any output is still a proper HTTP error and the provider layer may retry or
fall back freely. Once text has reached the client, a hop that breaks is final for this request:
the stream ends with an `error` event (never a second, duplicated answer), and the client's own
retry policy takes over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from agentry_llm import ChatRequest, ChatResponse, ProviderChain, ProvidersFailed
from agentry_llm.base import TextCallback
from agentry_llm.http import REQUEST_SENT

from .calls import Call, Outcome, StreamBroken, public_failures
from .channels import Redactor
from .wire import StreamWriter

log = logging.getLogger("agentry.gateway")

# What the upstream task reports: ("text", str) as it streams, then ("done", ChatResponse) or a
# failure (kind, exception) with kind one of "failed", "broken", "timeout", "error".
Item = tuple[str, Any]
Finish = Callable[[Call, Outcome, ChatResponse | None], None]


async def run_chain(
    chain: ProviderChain,
    chat: ChatRequest,
    queue: asyncio.Queue[Item],
    *,
    stream: bool,
    deadline: float,
    sent: Callable[[], None] | None = None,
) -> None:
    """`sent`: called once the request has gone upstream (this task's own context)."""
    on_text: TextCallback | None = (lambda t: queue.put_nowait(("text", t))) if stream else None
    if sent is not None:
        REQUEST_SENT.set(sent)
    try:
        async with asyncio.timeout(deadline):
            response = await chain.complete(chat, on_text=on_text)
        queue.put_nowait(("done", response))
    except ProvidersFailed as exc:
        queue.put_nowait(("failed", exc))
    except StreamBroken as exc:
        queue.put_nowait(("broken", exc))
    except TimeoutError as exc:
        queue.put_nowait(("timeout", exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unexpected error in an upstream call")
        queue.put_nowait(("error", exc))


async def relay(
    call: Call,
    writer: StreamWriter,
    first: Item,
    queue: asyncio.Queue[Item],
    task: asyncio.Task[None],
    redact: Redactor,
    finish: Finish,
) -> AsyncIterator[bytes]:
    """The stream's events, from the first item on; settles the call however the stream ends."""
    outcome: Outcome | None = None
    response: ChatResponse | None = None
    try:
        yield writer.open(call.answered_model())
        kind, value = first
        while True:
            if kind == "text":
                call.text_sent = True
                yield writer.text(value)
            elif kind == "done":
                response = value
                text = value.message.text()
                if not call.text_sent and text:
                    call.text_sent = True
                    yield writer.text(text)
                yield writer.close(value)
                outcome = "ok"
                break
            else:
                outcome = kind  # type: ignore[assignment]
                what = public_failures([value.error]) if isinstance(value, StreamBroken) else kind
                message = f"Agentry gateway: upstream failed mid-stream ({what}); call {call.id}"
                yield writer.fail(redact(message))
                break
            kind, value = await queue.get()
    finally:
        if outcome is None:  # the client went away
            task.cancel()
            outcome = "cancelled"
        finish(call, outcome, response)


class SettlingStream(StreamingResponse):
    """A streaming response that reports when it is done, however it ends."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
