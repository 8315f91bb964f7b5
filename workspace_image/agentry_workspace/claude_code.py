"""`runtime: claude-code`: the Claude Code CLI in print mode, its stream-json mapped to our events.

    claude -p --output-format stream-json --verbose --model M --max-turns N
           --append-system-prompt <instructions> --allowedTools ... --disallowedTools ...
           [--max-budget-usd X] [--fallback-model F]          (prompt on stdin)

Mapping: each assistant message -> `turn` (+ `tool_call` per tool_use block) and `usage`;
tool_result blocks in user messages -> `tool_result`; the final `result` line -> stop reason,
summary and usage. Each API message's usage counts its cache writes and reads as parts of the input
and prices them at the cache rates (usage.ModelUsage); the final cost is the CLI's total_cost_usd,
which also covers the calls the CLI makes besides the agent's turns. Budgets the CLI cannot enforce
(maxTokensPerRun) and the deadline are enforced here by killing the CLI. Tool mapping: shell/python
-> Bash, files -> Read, Write, Edit, Glob, Grep, LS, http -> WebFetch limited to the allow-list
domains. There is no approval pause under this runtime: tools listed in approval.redTools are simply
not allowed.

The CLI never holds the key or the run token: it talks to a loopback relay inside this process
(cli_relay.py), which adds the credential on the way to the gateway or the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agentry_common import pricing
from agentry_common.models import Provider as ProviderKind
from agentry_common.models import usd
from agentry_llm.factory import KEY_ENV
from agentry_llm.types import TokenUsage

from .claude_cli import cli_argv, cli_env, find_binary, relay_settings
from .cli_relay import CliRelay
from .config import ConfigError, RunConfig
from .events import TEXT_IN_EVENTS, EventSink
from .outcome import Outcome, StopReason
from .prompts import first_message
from .tools.base import one_line
from .usage import ModelUsage

_RESULT_STOPS = {
    "error_max_turns": StopReason.MAX_TURNS,
    "error_max_budget_usd": StopReason.MAX_COST,
    "error_during_execution": StopReason.ERROR,
}
STREAM_LINE_LIMIT = 16 * 1024 * 1024
CORRELATION_HEADER = "x-agentry-correlation-id"  # as the agentry runtime sends it (runner.py)


@dataclass
class _Tally:
    by_message: dict[str, tuple[str, TokenUsage]] = field(default_factory=dict)
    model: str | None = None

    def record(self, msg_id: str, usage: Mapping[str, Any]) -> None:
        # The CLI repeats an API message's usage on every content block it emits for it.
        self.by_message[msg_id] = (self.model or "", token_usage(usage))

    def total(self) -> ModelUsage:
        total = ModelUsage()
        for model, usage in self.by_message.values():
            total.merge(ModelUsage.of_call(model, usage))
        return total

    @property
    def turns(self) -> int:
        return len(self.by_message)


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return int(value) if isinstance(value, int) else 0


def token_usage(usage: Mapping[str, Any]) -> TokenUsage:
    """A Messages API usage as the CLI reports it, in TokenUsage's terms: there `input_tokens` is only
    what follows the last cache breakpoint; here it is all input, the cached parts named."""
    read = _count(usage, "cache_read_input_tokens")
    write = _count(usage, "cache_creation_input_tokens")
    creation = usage.get("cache_creation")
    write_1h = _count(creation, "ephemeral_1h_input_tokens") if isinstance(creation, Mapping) else 0
    return TokenUsage(
        input_tokens=_count(usage, "input_tokens") + read + write,
        output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=min(write_1h, write),
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


class ClaudeCodeRunner:
    def __init__(self, cfg: RunConfig, events: EventSink) -> None:
        self.cfg = cfg
        self.events = events
        model = cfg.model
        if model.provider is not ProviderKind.ANTHROPIC:
            raise ConfigError("runtime claude-code needs model.provider anthropic")
        key_var = KEY_ENV[ProviderKind.ANTHROPIC]
        if not cfg.env.get(key_var, "").strip():
            raise ConfigError(f"runtime claude-code: no API key, set {key_var}")
        self.binary = find_binary(cfg.env)
        self.tally = _Tally(model=model.name)
        self._proc: asyncio.subprocess.Process | None = None
        self._stop: tuple[StopReason, str] | None = None
        self._texts: list[str] = []

    def argv(self) -> list[str]:
        return cli_argv(self.binary, self.cfg)

    def child_env(self, relay_url: str) -> dict[str, str]:
        return cli_env(self.cfg, relay_url)

    def request_stop(self, note: str) -> None:
        self._stop = (StopReason.DEADLINE, f"Stopped: {note}.")
        self._kill()

    def interrupt(self) -> None:
        """SIGTERM: this runtime keeps no journal, so it stops now (a `deadline` stop)."""
        self.request_stop("terminated (SIGTERM)")

    def _kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def run(self) -> Outcome:
        spec = self.cfg.spec
        self.events.emit(
            "start",
            agent=self.cfg.agent,
            namespace=self.cfg.namespace,
            runtime=spec.runtime.value,
            providers=[f"anthropic/{self.cfg.model.name}"],
            tools=[t.value for t in spec.tools],
            deadlineSeconds=self.cfg.deadline_seconds,
            budget=spec.budget.wire(),
            resumed=False,
        )
        upstream, credential, models = relay_settings(self.cfg)
        relay = CliRelay(
            upstream,
            credential,
            models,
            headers={CORRELATION_HEADER: self.cfg.correlation_id},
            timeout=self.cfg.settings.llm_timeout_seconds,
        )
        async with relay:  # the credential stays in this process; the CLI gets the relay's address
            return await self._run_cli(relay.url)

    async def _run_cli(self, relay_url: str) -> Outcome:
        prompt = first_message(self.cfg)
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(),
            cwd=self.cfg.workspace,
            env=self.child_env(relay_url),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=STREAM_LINE_LIMIT,
        )
        result: dict[str, Any] | None = None
        stderr_task = asyncio.create_task(self._drain_stderr())
        try:
            async with asyncio.timeout(self.cfg.remaining_seconds()):
                await self._send_prompt(prompt)
                result = await self._read_stream()
                await self._proc.wait()
        except TimeoutError:
            self._stop = self._stop or (
                StopReason.DEADLINE,
                f"Stopped: deadline of {self.cfg.deadline_seconds:g}s reached.",
            )
        finally:
            self._kill()
            await self._proc.wait()
            stderr_tail = await stderr_task
        return self._outcome(result, stderr_tail)

    async def _send_prompt(self, prompt: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._proc.stdin.write(prompt.encode("utf-8"))
            await self._proc.stdin.drain()
        self._proc.stdin.close()

    async def _drain_stderr(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        tail = b""
        while chunk := await self._proc.stderr.read(65536):
            tail = (tail + chunk)[-4000:]
        return tail.decode("utf-8", errors="replace")

    async def _read_stream(self) -> dict[str, Any] | None:
        assert self._proc is not None and self._proc.stdout is not None
        result: dict[str, Any] | None = None
        while line := await self._proc.stdout.readline():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # the CLI's non-JSON noise
            if not isinstance(message, dict):
                continue
            kind = message.get("type")
            if kind == "system" and message.get("subtype") == "init":
                self.tally.model = str(message.get("model") or self.tally.model)
            elif kind == "assistant":
                self._on_assistant(message.get("message") or {})
            elif kind == "user":
                self._on_user(message.get("message") or {})
            elif kind == "result":
                result = message
            if self._stop is not None:
                self._kill()
                break
        return result

    def _on_assistant(self, message: Mapping[str, Any]) -> None:
        msg_id = str(message.get("id") or f"anon-{len(self.tally.by_message)}")
        first = msg_id not in self.tally.by_message
        if message.get("model"):
            self.tally.model = str(message["model"])
        self.tally.record(msg_id, message.get("usage") or {})
        blocks = [b for b in message.get("content") or [] if isinstance(b, dict)]
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        if text:
            self._texts.append(text)
        self.events.emit(
            "turn",
            turn=self.tally.turns,
            provider="anthropic",
            model=self.tally.model,
            stopReason=message.get("stop_reason") or ("tool_use" if uses else None),
            text=text[:TEXT_IN_EVENTS],
            toolCalls=[str(u.get("name")) for u in uses],
            newTurn=first,
        )
        for use in uses:
            self.events.emit(
                "tool_call",
                turn=self.tally.turns,
                toolUseId=use.get("id"),
                tool=use.get("name"),
                risk=None,
                action="run",
                arguments=one_line(json.dumps(use.get("input", {}), ensure_ascii=False), 300),
            )
        self.events.emit("usage", **self._usage())
        self._check_budget()

    def _on_user(self, message: Mapping[str, Any]) -> None:
        content = message.get("content")
        if not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                text = _content_text(block.get("content"))
                self.events.emit(
                    "tool_result",
                    toolUseId=block.get("tool_use_id"),
                    isError=bool(block.get("is_error")),
                    refused=False,
                    bytes=len(text.encode("utf-8")),
                    summary=one_line(text, 300),
                )

    def _check_budget(self) -> None:
        budget = self.cfg.spec.budget
        total = self.tally.total()
        if budget.max_tokens_per_run is not None:
            used = total.input_tokens + total.output_tokens
            if used >= budget.max_tokens_per_run:
                self._stop = (
                    StopReason.MAX_TOKENS,
                    f"Stopped: budget.maxTokensPerRun ({budget.max_tokens_per_run}) reached "
                    f"({used} tokens used).",
                )
        limit = usd(budget.max_cost_per_run_usd)
        if limit is not None and total.cost >= limit:
            self._stop = (
                StopReason.MAX_COST,
                f"Stopped: budget.maxCostPerRunUSD ({budget.max_cost_per_run_usd}) reached.",
            )

    def _usage(self, final: Mapping[str, Any] | None = None) -> dict[str, Any]:
        total, turns = self.tally.total(), self.tally.turns
        if final is not None:
            usage = final.get("usage")
            if isinstance(usage, dict):  # the whole run's
                total = ModelUsage.of_call(self.tally.model or "", token_usage(usage))
            if final.get("total_cost_usd") is not None:
                with contextlib.suppress(InvalidOperation, ValueError):
                    billed = Decimal(str(final["total_cost_usd"]))
                    # What the CLI spent besides the priced turns was not cached here either.
                    total.uncached_cost += max(Decimal(0), billed - total.cost)
                    total.cost = billed
            if isinstance(final.get("num_turns"), int):
                turns = final["num_turns"]
        return {
            **total.tokens(),
            "costUSD": pricing.usd_string(total.cost),
            "uncachedCostUSD": pricing.usd_string(total.uncached_cost),
            "model": self.tally.model,
            "turns": turns,
        }

    def _outcome(self, result: dict[str, Any] | None, stderr_tail: str) -> Outcome:
        last = self._texts[-1] if self._texts else ""
        if self._stop is not None:
            reason, summary = self._stop
            if last:
                summary = f"{summary}\n\nLast message from the model:\n{last}"
            return Outcome(reason, summary, usage=self._usage(result))
        if result is None:
            code = self._proc.returncode if self._proc is not None else None
            detail = self.events.scrub(stderr_tail.strip()[-1500:]) or "no output"
            return Outcome(
                StopReason.ERROR,
                f"Claude Code exited with code {code} without a result: {detail}",
                usage=self._usage(),
            )
        text = str(result.get("result") or "")
        subtype = str(result.get("subtype") or "")
        if subtype == "success" and not result.get("is_error"):
            reason = StopReason.END_TURN
        elif subtype == "success":
            reason = StopReason.PROVIDERS_FAILED  # the CLI reports a failed API call this way
        else:
            reason = _RESULT_STOPS.get(subtype, StopReason.ERROR)
        summary = text or last or f"Claude Code ended: {subtype}"
        if reason is not StopReason.END_TURN and text == "":
            summary = f"Claude Code ended: {subtype}" + (f"\n\n{last}" if last else "")
        return Outcome(reason, summary, usage=self._usage(result))
