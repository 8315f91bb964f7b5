"""Step events: one JSON object per line on stdout, so `kubectl logs` and the API can follow a run.

Every event has ts (RFC 3339, UTC), type, correlationId and execution. Secrets never leave the
process: each event passes the run's redaction step (redaction.py) before its line is written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from agentry_common.statesig import ENV_STATE_KEY

from .outcome import Outcome
from .redaction import Redactor

# Never passed to tools and redacted from events: provider keys (or the run token standing in for them)
# and the key that signs a paused run's state (agentry_common.statesig).
SECRET_ENV = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_AUTH_TOKEN", ENV_STATE_KEY)
TEXT_IN_EVENTS = 4000  # characters of a model's message in a `turn` event
RESULT_IN_EVENTS = 16384  # characters of the summary in the `result` event
# The event types of the contract (workspace_image/README.md, "Output 1"; a test holds them equal).
EVENT_TYPES = frozenset(
    {
        "start",
        "mcp_servers",
        "turn",
        "tool_call",
        "tool_result",
        "usage",
        "compaction",
        "retry",
        "fallback",
        "breaker",
        "approval_request",
        "approval_decision",
        "warning",
        "error",
        "result",
        "resumed",
        "steered",  # steering.py: a person's messages joined the conversation
        "interrupted",
        "waiting",
    }
)


def process_age() -> float:
    """Seconds since this process started (the kernel's start time in /proc): the `start` event's
    `startupSeconds`, the runtime's own start-up (interpreter, imports, configuration) in a start's
    breakdown (`python -m bench.run_starts`). 0.0 where /proc has no such entry."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in clock ticks
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


_second: tuple[int, str] = (-1, "")  # the last whole second stamped, formatted


def now_rfc3339() -> str:
    """UTC now to the millisecond (`2026-01-02T03:04:05.678Z`). Every event and journal entry is
    stamped: the part up to the second is formatted once a second (a quarter of datetime's cost)."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def secret_values(env: Mapping[str, str]) -> list[str]:
    # Very short values would redact ordinary words; real keys are long.
    return [v for k in SECRET_ENV if len(v := env.get(k, "").strip()) >= 8]


def tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment tools see: the run's, minus the LLM provider keys and the state key."""
    return {k: v for k, v in env.items() if k not in SECRET_ENV}


def result_event_fields(outcome: Outcome) -> dict[str, Any]:
    """The `result` event: the run's full result, its summary cut to RESULT_IN_EVENTS."""
    data = outcome.full()
    if len(data["summary"]) > RESULT_IN_EVENTS:
        data["summary"] = data["summary"][:RESULT_IN_EVENTS]
        data["truncated"] = True
    return data


class EventSink:
    """Base sink: builds and scrubs events; subclasses decide where they go."""

    def __init__(self, *, correlation_id: str, execution: str, secrets: Iterable[str] = ()) -> None:
        self.correlation_id = correlation_id
        self.execution = execution
        self.redactor = Redactor(secrets)  # the run's one redaction step, for all that leaves it

    def bind(self, *, correlation_id: str, execution: str, secrets: Iterable[str]) -> None:
        """Set identity once the config is known (errors before that use what env said)."""
        self.correlation_id = correlation_id
        self.execution = execution
        self.redactor.add(secrets)

    def scrub(self, text: str) -> str:
        return self.redactor.text(text)

    def redact(self, value: Any) -> Any:
        return self.redactor.value(value)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "ts": now_rfc3339(),
            "type": type,
            "correlationId": self.correlation_id,
            "execution": self.execution,
            **fields,
        }
        # Redacted as a structure: in the serialized line JSON escaping could hide a secret.
        line = json.dumps(self.redact(event), ensure_ascii=False)
        written: dict[str, Any] = json.loads(line)
        self.write(line, written)
        return written

    def write(self, line: str, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def text_delta(self, text: str) -> None:
        """Streaming model text; JSON sinks ignore it (the turn event carries the text)."""


class JsonEventSink(EventSink):
    def __init__(self, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stream = stream

    def write(self, line: str, event: dict[str, Any]) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()


class RecordingSink(EventSink):
    """Keeps events in memory (tests, and callers that post-process)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("correlation_id", "test")
        kwargs.setdefault("execution", "test")
        super().__init__(**kwargs)
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []

    def write(self, line: str, event: dict[str, Any]) -> None:
        self.lines.append(line)
        self.events.append(event)

    def of(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]
