"""The agent loop: model turn, tool calls, budgets, approvals, until a stop reason."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from agentry_common.checkpoints import MAX_RESUMES_WITHOUT_PROGRESS, STEP_GRACE_SECONDS
from agentry_common.governance import RefusalType
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

from . import journal, toolrun
from .approvals import pause, resume
from .checkpoints import TOKEN_ENVS, Fenced, open_journal
from .config import ConfigError, RunConfig
from .context import ContextKeeper, ContextOverflow
from .durable import Durable, Opened, StopAtCheckpoint, continue_from, pod_name
from .events import TEXT_IN_EVENTS, EventSink, process_age, tool_env
from .mcp_servers import McpServers
from .outcome import Outcome, StopReason
from .policy import Verdict, assess_call
from .prompts import CONTINUE_PROMPT, first_message, system_prompt
from .steering import Steering, closing
from .telemetry import traced_turn
from .tools import ToolContext, enabled_tools
from .tools.memory import memory_tool
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
        memory = memory_tool(cfg.env, TOKEN_ENVS, events.scrub)  # the Agent's spec.memory, via the gateway
        if memory is not None:
            self.tools[memory.name] = memory
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
        self.durable = Durable(open_journal(cfg.env, events))
        self.steer = Steering(self)  # a person's messages to the live run

    # -- public -----------------------------------------------------------------------------

    def request_stop(self, note: str) -> None:
        """Stop now as if the deadline had passed (used for SIGTERM)."""
        self._stop_note = note
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    def interrupt(self) -> None:
        """SIGTERM: with a journal, finish the current step if it ends within STEP_GRACE_SECONDS and
        stop at the checkpoint (INTERRUPTED); without one, stop now (a `deadline` stop)."""
        if not self.durable.on:
            self.request_stop("terminated (SIGTERM)")
            return
        self.durable.stopping = True
        if self._timeout is not None:
            grace = asyncio.get_running_loop().time() + STEP_GRACE_SECONDS
            self._timeout.reschedule(min(self._timeout.when() or grace, grace))

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
            if self.durable.stopping:  # the step did not end within the grace: its intent is journaled
                outcome = self._interrupted(f"its step did not end within {STEP_GRACE_SECONDS}s")
            else:
                note = self._stop_note or f"deadline of {self.cfg.deadline_seconds:g}s reached"
                outcome = self._stop(StopReason.DEADLINE, f"Stopped: {note}.")
        except StopAtCheckpoint:
            outcome = self._interrupted("its last step is journaled")
        except Fenced as err:
            self.durable.writer = None  # not one more entry: the other pod owns the journal now
            outcome = self._stop(StopReason.INTERRUPTED, f"Stopped: {err}; this pod left the run to it.")
        finally:
            self.durable.abandon()
            for provider in self.providers:
                await provider.aclose()
            if self.durable.writer is not None:
                await self.durable.writer.store.aclose()
        return outcome  # app.finish redacts it and writes it out (termination message, result.json)

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> Outcome:
        outcome = await self._begin()
        while outcome is None:
            outcome = await self._turn()
        await self.durable.flush(closing(outcome))  # the last entries (the inbox closed) before the result
        outcome.checkpoint = self.durable.status()
        return outcome

    async def _begin(self) -> Outcome | None:
        """The conversation's start: the journal's state (a lost pod's run), a paused run's state
        (which may pause again), a follow-up's parent conversation and its input, or the input."""
        opened = await self.durable.open(self.cfg)
        if opened is not None:
            own = opened.own
            # A resumed run's deadline counts from its journal's first entry.
            if self.cfg.remaining_seconds() <= 0:
                limit = f"{self.cfg.deadline_seconds:g}s"
                return self._stop(
                    StopReason.DEADLINE, f"Stopped: deadline of {limit} reached (since {own.first_at})."
                )
            if self._timeout is not None:
                self._timeout.reschedule(asyncio.get_running_loop().time() + self.cfg.remaining_seconds())
            if own.idle_resumes >= MAX_RESUMES_WITHOUT_PROGRESS:
                return self._stop(
                    StopReason.RESUME_LIMIT,
                    f"Stopped: resumed {own.idle_resumes} times in a row without progress "
                    f"(entry {own.entries} of the journal each time); not resuming again.",
                )
            begin = journal.begin(pod_name(), resumed=not own.empty, parent=opened.parent_name)
            self.durable.stage(journal.BEGIN, begin)
            if not own.empty:
                await self.durable.flush()  # stored at once: resumes that make no progress are counted
            # A journal without a conversation (the pod was lost at once) starts from the input.
            if own.messages and not (own.paused and self.cfg.resume is not None):
                return await continue_from(self, own)
        if self.cfg.resume is not None:
            return await resume(self)
        self._follow_up(opened, first_message(self.cfg))  # stored with the first model call
        return None

    def _follow_up(self, opened: Opened | None, text: str) -> None:
        if opened is None or opened.parent is None:
            self._append(Message(role="user", content=[TextBlock(text=text)]))
            return
        messages = journal.continue_with(opened.parent, text)
        self.messages = messages[:-1]  # usage and outputs are the follow-up's own, from zero
        reset = journal.reset("follow_up", self.messages, self.usage.to_state(), {}, opened.parent_name)
        self.durable.stage(journal.RESET, reset)
        self._append(messages[-1])

    def _append(self, message: Message, *, final: bool = False) -> None:
        """A message joins the conversation and the journal (stored at the next step boundary)."""
        self.messages.append(message)
        data = journal.message(message, self.usage.to_state(), self.outputs.values, final=final)
        self.durable.stage(journal.MESSAGE, data)

    async def _turn(self) -> Outcome | None:
        """One model call and its tool calls; an outcome when the run stops here."""
        if self._turns_spent():
            return self._max_turns()
        # The boundary waits for no append: what is staged is stored during the model call, which the
        # gateway refuses while a person's message is queued (steering.py). After SIGTERM it stops here.
        if self.durable.stopping:
            await self.durable.step()
        steered = await self.steer.boundary()  # a person's messages join here, or an interrupt ends it
        if steered is not None:
            return steered
        storing = self.durable.flush_soon()
        try:
            answer = await self._call_model()
        except BaseException:
            await self.durable.settle(storing, failed=True)
            raise
        await self.durable.settle(storing, answer=answer)
        if answer is None:  # a message is queued: delivered at this boundary, then the call again
            self.steer.queued_at_gateway()
            return None
        if isinstance(answer, Outcome):
            return answer
        message, uses = self._record_turn(answer)  # journaled with the next step's entries
        if not uses and answer.stop_reason != "max_tokens":
            return await self.steer.final(message)  # ends, unless a steering message is queued
        over = self._over_budget()
        if over is not None:
            return over
        if self._turns_spent():
            return self._max_turns()  # tool results would never reach the model: do not run the tools
        if not uses:
            self._append(Message(role="user", content=[TextBlock(text=CONTINUE_PROMPT)]))
            return None
        return await self._run_tool_calls(uses, [])

    async def _call_model(self) -> ChatResponse | Outcome | None:
        """The model's answer; an outcome when the run stops here; None: the gateway refused the call
        for a steering message queued beyond what the call names (steering.py)."""
        try:
            fitted = await self.context.fit(self.messages, self._request, self.usage.turns + 1)
            if fitted is not self.messages:
                self.messages = fitted
                data = journal.reset("compaction", fitted, self.usage.to_state(), self.outputs.values)
                self.durable.stage(journal.RESET, data)
            request = self.context.with_breakpoints(self._request(self.messages))
            request.headers = {**self.steer.headers(), **self.durable.call_headers()}
            over = self._over_budget()  # a compaction's summary call is charged too
            if over is not None:
                return over
            turn = self.usage.turns + 1
            return await traced_turn(self.chain, self.providers, request, self.events.text_delta, turn)
        except ContextOverflow as err:
            return self._stop(StopReason.CONTEXT_OVERFLOW, f"Stopped: {err}.")
        except ProvidersFailed as err:
            if err.kind == RefusalType.STEERING_QUEUED:
                return None
            # `final`: refused by policy (a gateway budget), not broken: its own stop reason.
            reason = StopReason.BUDGET_EXCEEDED if err.final else StopReason.PROVIDERS_FAILED
            return self._stop(reason, f"Stopped: {err}")

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
        self._append(message, final=not uses and response.stop_reason != "max_tokens")
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
        """Run a turn's tool calls in order; stop at the first one that needs approval. Each call's
        intent is journaled before it runs, with the previous call's result (one append)."""
        results = list(done)
        for index, use in enumerate(uses):
            if self.steer.cut_by:  # a person interrupted the turn: its remaining calls are not run
                results.append(self.steer.not_run(use))
                continue
            tool = self.tools.get(use.name)
            verdict = assess_call(tool, use.name, use.input, self.spec, self.ctx)
            if verdict.action == "approve":
                return await pause(self, use, verdict, results, list(uses[index + 1 :]))
            results.append(await self._execute(use, verdict))
        self.messages.append(Message(role="user", content=list(results)))
        return None

    async def _execute(self, use: ToolUseBlock, verdict: Verdict) -> ToolResultBlock:
        runs = verdict.action == "run" and use.name in self.tools
        started = journal.tool_started(use) if runs else None
        if runs and toolrun.idempotent(self.tools, use):
            await self.durable.step_beside(journal.TOOL_STARTED, started)  # its intent stored as it runs
        else:
            await self.durable.step(journal.TOOL_STARTED, started)  # stored before it runs
        if runs and await self.steer.interrupting():
            return self.steer.not_run(use)
        result = await toolrun.execute(use, verdict, self.tools, self.ctx, self.events, self.usage.turns)
        self.durable.stage_result(journal.TOOL_RESULT, journal.tool_result(result, self.outputs.values))
        return result

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
            checkpoint=self.durable.status(),
        )

    def _interrupted(self, why: str) -> Outcome:
        status = self.durable.status() or {}
        return self._stop(
            StopReason.INTERRUPTED,
            f"Interrupted (SIGTERM): {why}; a new pod resumes the run from its checkpoint "
            f"(entry {status.get('entries', 0)}).",
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
            checkpoints=self.durable.writer is not None,
            parent=self.durable.writer.parent_name if self.durable.writer is not None else "",
            startupSeconds=round(process_age(), 3),
        )

    def _tool_specs(self) -> list[ToolSpec]:
        return [tool.spec(self.ctx) for tool in self.tools.values()]

    def _system_prompt(self) -> str:
        return system_prompt(self.cfg, list(self.tools))
