"""Test doubles of our own ChatProvider interface (agentry_llm; unit tier: no HTTP, the integration
tier uses the real SDKs against the scripted wire server), and a config builder."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from agentry_common.models import AgentSpec
from agentry_llm import (
    ChatRequest,
    ChatResponse,
    Message,
    ProviderError,
    TextBlock,
    TokenUsage,
    ToolUseBlock,
)
from agentry_workspace.config import RunConfig, build_config
from agentry_workspace.state import ResumeRequest

API_KEY = "sk-ant-test-0123456789abcdefghij"


def text(content: str, inp: int = 10, out: int = 5) -> ChatResponse:
    return ChatResponse(
        message=Message(role="assistant", content=[TextBlock(text=content)]),
        stop_reason="end_turn",
        usage=TokenUsage(input_tokens=inp, output_tokens=out),
        provider="fake",
        model="claude-sonnet-4-6",
    )


def tool(
    name: str, args: dict[str, Any], *, id: str = "", inp: int = 10, out: int = 5, say: str = ""
) -> ChatResponse:
    blocks: list[Any] = [TextBlock(text=say)] if say else []
    blocks.append(ToolUseBlock(id=id or f"toolu_{name}_{len(str(args))}", name=name, input=args))
    return ChatResponse(
        message=Message(role="assistant", content=blocks),
        stop_reason="tool_use",
        usage=TokenUsage(input_tokens=inp, output_tokens=out),
        provider="fake",
        model="claude-sonnet-4-6",
    )


class FakeProvider:
    """Answers from a script of ChatResponse / ProviderError / ("sleep", seconds) items."""

    def __init__(
        self, script: list[Any], name: str = "anthropic/claude-sonnet-4-6", model: str = "claude-sonnet-4-6"
    ) -> None:
        self.script = list(script)
        self._name = name
        self._model = model
        self.requests: list[ChatRequest] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return "fake"

    async def complete(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        # Deep copy: the runner keeps appending to the same message list.
        self.requests.append(request.model_copy(deep=True))
        if not self.script:
            raise AssertionError("FakeProvider: script exhausted")
        item = self.script.pop(0)
        if isinstance(item, tuple) and item[0] == "sleep":
            await asyncio.sleep(item[1])
            item = self.script.pop(0) if self.script else text("late")
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, ChatResponse)
        return item.model_copy(update={"model": self._model, "provider": self._name.split("/")[0]})

    async def aclose(self) -> None:
        self.closed = True


def overloaded(provider: str = "anthropic/claude-sonnet-4-6") -> ProviderError:
    return ProviderError("Overloaded", provider=provider, status=529, retryable=True)


FAST_ENV = {
    "AGENTRY_RETRY_INITIAL_SECONDS": "0.001",
    "AGENTRY_RETRY_MAX_SECONDS": "0.01",
}


def make_config(
    tmp_path: Path,
    spec: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    input_text: str = "Do the task.",
    resume: ResumeRequest | None = None,
    execution: str = "ex-1",
) -> RunConfig:
    base: dict[str, Any] = {
        "instructions": "You are a test agent.",
        "model": {"provider": "anthropic", "name": "claude-sonnet-4-6"},
        "tools": ["shell", "python", "files", "http"],
    }
    base.update(spec or {})
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ANTHROPIC_API_KEY": API_KEY,
        "AGENTRY_CORRELATION_ID": "corr-1",
        **FAST_ENV,
        **(env or {}),
    }
    return build_config(
        full_env,
        spec=AgentSpec.model_validate(base),
        name="tester",
        namespace="team-a",
        input_text=input_text,
        workspace=tmp_path / "ws",
        result_file=tmp_path / "termination-log",
        resume=resume,
        execution=execution,
    )


def alive(pid: int) -> bool:
    """Running (an orphan killed by its group may linger as a zombie until init reaps it)."""
    for _ in range(20):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True
