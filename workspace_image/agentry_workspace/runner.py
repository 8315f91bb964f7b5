"""The agent loop: model turn, tool calls, budgets, approvals, until a stop reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from agentry_common.statesig import ENV_STATE_KEY
from agentry_common.tracing import set_error
from agentry_llm import (
    BreakerRegistry,
    ChatProvider,
    ChatRequest,
    ChatResponse,
    Message,
    MissingProviderKey,
    ProviderChain,
    ProvidersFailed,
    RetryPolicy,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    build_chain_providers,
)

from .approvals import (
    approval_summary,
    check_resume,
    denied_result,
    emit_decision,
    save_state,
    signed_state,
)
from .config import ConfigError, RunConfig
from .context import ContextKeeper, ContextOverflow
from .events import TEXT_IN_EVENTS, EventSink, tool_env
from .mcp_servers import McpServers
from .outcome import Outcome, StopReason
from .policy import Verdict, assess_call
from .prompts import CONTINUE_PROMPT, EMPTY_INPUT_PROMPT, system_prompt
from .state import PendingApproval, RunState, approval_id
from .telemetry import tool_span, traced_turn
from .tools import ToolContext, ToolInputError, enabled_tools
from .tools.base import one_line
from .tools.outputs import OutputsTool
from .usage import UsageTracker, budget_stop


class Runner:
    def __init__(
        self,
        cfg: RunConfig,
        events: EventSink,
        *,
        providers: Sequence[ChatProvider] | None = None,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self.cfg = cfg
        self.spec = cfg.spec
        self.events = events
        s = cfg.settings
        if providers is None:
            try:
                providers = build_chain_providers(
                    cfg.model,
                    cfg.env,
                    timeout=s.llm_timeout_seconds,
                    headers={"x-agentry-correlation-id": cfg.correlation_id},
                )
            except MissingProviderKey as err:
                raise ConfigError(str(err)) from None
        self.providers = list(providers)
        self.chain = ProviderChain(
            self.providers,
            breakers or BreakerRegistry(fail_max=s.breaker_fail_max, reset_timeout=s.breaker_reset_seconds),
            RetryPolicy(s.retry_attempts, s.retry_initial_seconds, s.retry_max_seconds),
            on_event=self._on_chain_event,
        )
        self.tools = enabled_tools(cfg.spec)
        self.outputs = OutputsTool(cfg.outputs)
        if cfg.outputs:
            self.tools[self.outputs.name] = self.outputs
        self.ctx = ToolContext(
            workspace=cfg.workspace,
            env=tool_env(cfg.env),
            timeout=s.tool_timeout_seconds,
            max_output=s.tool_output_bytes,
            allowed_hosts=tuple(cfg.spec.http.allowed_hosts),
        )
        self.usage = UsageTracker()
        self.messages: list[Message] = []
        self.context = ContextKeeper(cfg, [p.model for p in self.providers], events, self._summarise)
        self._timeout: asyncio.Timeout | None = None
        self._stop_note = ""
        self._cost_warned = False
        self._mcp: list[dict[str, Any]] = []  # what the MCP servers offered (the result's `mcp`)

    # -- public -----------------------------------------------------------------------------

    def request_stop(self, note: str) -> None:
        """Stop now as if the deadline had passed (used for SIGTERM)."""
        self._stop_note = note
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    async def run(self) -> Outcome:
        self._emit_start()
        try:
            async with asyncio.timeout(self.cfg.remaining_seconds()) as timeout:
                self._timeout = timeout
                if self._stop_note:  # SIGTERM arrived before the run started
                    timeout.reschedule(asyncio.get_running_loop().time())
                async with McpServers(
                    self.spec, self.cfg.env, workspace=str(self.cfg.workspace), events=self.events
                ) as mcp:
                    self.tools.update(mcp.tools)
                    self._mcp = mcp.report
                    outcome = await self._loop()
        except TimeoutError:
            if self._timeout is None or not self._timeout.expired():
                raise
            note = self._stop_note or f"deadline of {self.cfg.deadline_seconds:g}s reached"
            outcome = self._stop(StopReason.DEADLINE, f"Stopped: {note}.")
        finally:
            for provider in self.providers:
                await provider.aclose()
        return outcome  # app.finish redacts it and writes it out (termination message, result.json)

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> Outcome:
        waiting = await self._begin()
        if waiting is not None:
            return waiting
        while True:
            outcome = await self._turn()
            if outcome is not None:
                return outcome

    async def _begin(self) -> Outcome | None:
        """The conversation's start: the input, or a paused run's state (which may pause again)."""
        if self.cfg.resume is not None:
            return await self._resume()
        text = self.cfg.input_text.strip() or EMPTY_INPUT_PROMPT
        self.messages.append(Message(role="user", content=[TextBlock(text=text)]))
        return None

    async def _turn(self) -> Outcome | None:
        """One model call and its tool calls; an outcome when the run stops here."""
        if self._turns_spent():
            return self._max_turns()
        try:
            self.messages = await self.context.fit(self.messages, self._request, self.usage.turns + 1)
            request = self.context.with_breakpoints(self._request(self.messages))
            over = self._over_budget()  # a compaction's summary call is charged too
            if over is not None:
                return over
            turn = self.usage.turns + 1
            response = await traced_turn(self.chain, self.providers, request, self.events.text_delta, turn)
        except ContextOverflow as err:
            return self._stop(StopReason.CONTEXT_OVERFLOW, f"Stopped: {err}.")
        except ProvidersFailed as err:
            # `final`: refused by policy (a gateway budget), not broken: its own stop reason.
            reason = StopReason.BUDGET_EXCEEDED if err.final else StopReason.PROVIDERS_FAILED
            return self._stop(reason, f"Stopped: {err}")
        message, uses = self._record_turn(response)
        if not uses and response.stop_reason != "max_tokens":
            return self._stop(StopReason.END_TURN, message.text() or "(no final message)")
        over = self._over_budget()
        if over is not None:
            return over
        if self._turns_spent():
            return self._max_turns()  # tool results would never reach the model: do not run the tools
        if not uses:
            self.messages.append(Message(role="user", content=[TextBlock(text=CONTINUE_PROMPT)]))
            return None
        return await self._run_tool_calls(uses, [])

    def _request(self, messages: list[Message]) -> ChatRequest:
        return ChatRequest(
            system=self._system_prompt(),
            messages=messages,
            tools=self._tool_specs(),
            max_tokens=self.cfg.settings.max_output_tokens,
        )

    async def _summarise(self, request: ChatRequest) -> ChatResponse:
        response = await self.chain.complete(request)
        self.usage.add(response.model, response.usage, turn=False)  # charged, not an agent turn
        self._emit_usage()
        return response

    def _record_turn(self, response: ChatResponse) -> tuple[Message, list[ToolUseBlock]]:
        """Count the turn, keep the model's message, report it; returns it and its tool calls."""
        self.usage.add(response.model, response.usage)
        message = response.message
        uses = message.tool_uses()
        if response.stop_reason == "max_tokens" and uses:
            # A tool call cut off mid-way cannot be trusted: keep the text, ask to continue.
            kept = [b for b in message.content if not isinstance(b, ToolUseBlock)]
            message = Message(role="assistant", content=kept or [TextBlock(text="…")])
            uses = []
        self.messages.append(message)
        self.events.emit(
            "turn",
            turn=self.usage.turns,
            provider=response.provider,
            model=response.model,
            stopReason=response.stop_reason,
            text=message.text()[:TEXT_IN_EVENTS],
            toolCalls=[u.name for u in uses],
        )
        self._emit_usage()
        return message, uses

    def _turns_spent(self) -> bool:
        return self.usage.turns >= self.spec.budget.max_turns

    def _max_turns(self) -> Outcome:
        limit = self.spec.budget.max_turns
        return self._stop(StopReason.MAX_TURNS, f"Stopped: budget.maxTurns ({limit}) reached.")

    async def _run_tool_calls(
        self, uses: Sequence[ToolUseBlock], done: list[ToolResultBlock]
    ) -> Outcome | None:
        """Run a turn's tool calls in order; stop at the first one that needs approval."""
        results = list(done)
        for index, use in enumerate(uses):
            tool = self.tools.get(use.name)
            verdict = assess_call(tool, use.name, use.input, self.spec, self.ctx)
            if verdict.action == "approve":
                return self._request_approval(use, verdict, results, list(uses[index + 1 :]))
            results.append(await self._execute(use, verdict))
        self.messages.append(Message(role="user", content=list(results)))
        return None

    async def _execute(self, use: ToolUseBlock, verdict: Verdict) -> ToolResultBlock:
        with tool_span(use, verdict.risk.value, verdict.action) as span:
            result = await self._execute_untraced(use, verdict)
            if result.is_error:
                set_error(span, "tool error")
            return result

    async def _execute_untraced(self, use: ToolUseBlock, verdict: Verdict) -> ToolResultBlock:
        tool = self.tools.get(use.name)
        described = tool.describe(use.input) if tool is not None else use.name
        self.events.emit(
            "tool_call",
            turn=self.usage.turns,
            toolUseId=use.id,
            tool=use.name,
            risk=verdict.risk.value,
            action=verdict.action,
            arguments=described,
        )
        started = time.monotonic()
        details: dict[str, Any] = {}
        if verdict.action == "refuse" or tool is None:
            content, is_error, refused = f"Refused by policy: {verdict.reason}", True, True
        else:
            refused = False
            try:
                out = await tool.run(use.input, self.ctx)
                content, is_error, details = out.content, out.is_error, out.details
            except ToolInputError as err:
                content, is_error = str(err), True
            except OSError as err:
                content, is_error = f"{use.name} failed: {err}", True
        self.events.emit(
            "tool_result",
            toolUseId=use.id,
            tool=use.name,
            isError=is_error,
            refused=refused,
            bytes=len(content.encode("utf-8")),
            summary=one_line(content, 300),
            durationMs=int((time.monotonic() - started) * 1000),
            details=details,
        )
        return ToolResultBlock(tool_use_id=use.id, content=content, is_error=is_error)

    # -- approval ---------------------------------------------------------------------------

    def _request_approval(
        self,
        use: ToolUseBlock,
        verdict: Verdict,
        done: list[ToolResultBlock],
        remaining: list[ToolUseBlock],
    ) -> Outcome:
        apr_id = approval_id(self.cfg.execution, use.id)
        state = RunState(
            execution=self.cfg.execution,
            agent=self.cfg.agent,
            messages=self.messages,
            completed_results=done,
            pending=PendingApproval(
                approval_id=apr_id, tool_use=use, risk=verdict.risk, reason=verdict.reason
            ),
            remaining=remaining,
            usage=self.usage.to_state(),
            outputs=self.outputs.values,
        )
        state_path = save_state(self.cfg.state_dir, state)
        arguments = self.tools[use.name].describe(use.input)
        timeout = self.spec.approval.timeout_seconds
        self.events.emit(
            "approval_request",
            approvalId=apr_id,
            tool=use.name,
            toolUseId=use.id,
            risk=verdict.risk.value,
            reason=verdict.reason,
            arguments=arguments,
            input=use.input,
            timeoutSeconds=timeout,
            stateFile=str(state_path),
            **signed_state(state.wire(), self.cfg.env.get(ENV_STATE_KEY, ""), self.events.redact),
        )
        return self._stop(
            StopReason.APPROVAL_REQUIRED,
            f"Waiting for approval {apr_id}: {use.name} {arguments}",
            approval=approval_summary(apr_id, use, verdict, arguments, timeout),
        )

    async def _resume(self) -> Outcome | None:
        resume = self.cfg.resume
        assert resume is not None
        check_resume(resume, self.cfg.execution)
        state, decision = resume.state, resume.decision
        self.messages = list(state.messages)
        self.usage = UsageTracker.from_state(state.usage)
        self.outputs.values = dict(state.outputs)
        emit_decision(self.events, resume)
        use = state.pending.tool_use
        if decision.approved:
            # Approval lifts the wait, never a refusal: the allow-list is checked again.
            verdict = assess_call(self.tools.get(use.name), use.name, use.input, self.spec, self.ctx)
            if verdict.action == "approve":
                verdict = Verdict("run", verdict.risk, verdict.reason)
            result = await self._execute(use, verdict)
        else:
            result = denied_result(self.events, use, decision)
        return await self._run_tool_calls(state.remaining, [*state.completed_results, result])

    # -- helpers ----------------------------------------------------------------------------

    def _over_budget(self) -> Outcome | None:
        limited = self.spec.budget.max_cost_per_run_usd is not None
        if limited and self.usage.unpriced_models and not self._cost_warned:
            self._cost_warned = True
            self.events.emit(
                "warning",
                message="no price known for "
                + ", ".join(self.usage.unpriced_models)
                + ": their calls count as 0 USD against budget.maxCostPerRunUSD",
            )
        stop = budget_stop(self.spec.budget, self.usage)
        return None if stop is None else self._stop(*stop)

    def _last_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "assistant" and message.text():
                return message.text()
        return ""

    def _stop(self, reason: StopReason, summary: str, *, approval: dict[str, Any] | None = None) -> Outcome:
        if reason not in (StopReason.END_TURN, StopReason.APPROVAL_REQUIRED):
            last = self._last_text()
            if last:
                summary = f"{summary}\n\nLast message from the model:\n{last}"
        return Outcome(
            stop_reason=reason,
            summary=summary,
            usage=self.usage.result_usage(),
            approval=approval,
            retries=self.usage.retries,
            fallbacks=self.usage.fallbacks,
            mcp=self._mcp,
            outputs=dict(self.outputs.values),
        )

    def _on_chain_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "retry":
            self.usage.retries += 1
        elif kind == "fallback":
            self.usage.fallbacks += 1
        self.events.emit(kind, **data)
        if kind in ("retry", "fallback"):
            self._emit_usage()

    def _emit_usage(self) -> None:
        self.events.emit("usage", **self.usage.event_usage())

    def _emit_start(self) -> None:
        spec = self.spec
        self.events.emit(
            "start",
            agent=self.cfg.agent,
            namespace=self.cfg.namespace,
            runtime=spec.runtime.value,
            providers=[p.name for p in self.providers],
            tools=[t.value for t in spec.tools],
            deadlineSeconds=self.cfg.deadline_seconds,
            budget=spec.budget.wire(),
            resumed=self.cfg.resume is not None,
        )

    def _tool_specs(self) -> list[ToolSpec]:
        return [tool.spec(self.ctx) for tool in self.tools.values()]

    def _system_prompt(self) -> str:
        return system_prompt(self.cfg, list(self.tools))
