"""Context that fits (spec.context): a conversation near its model's window is compacted (long earlier
tool results cut with a note, older turns summarised by a charged call, tool calls kept with their
results), the run's events say so, and one that cannot fit ends `context_overflow`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentry_llm import ChatRequest, ChatResponse, Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentry_workspace.context import (
    CUT_HEAD_CHARS,
    CUT_TAIL_CHARS,
    SUMMARY_SYSTEM,
    context_window,
    cut_tool_results,
    estimate_tokens,
    split_point,
    summary_request,
)
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner

from .fakes import API_KEY, FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit

WINDOW, MAX_OUT = 3000, 100
SMALL_WINDOW = {"AGENTRY_CONTEXT_WINDOW_TOKENS": str(WINDOW), "AGENTRY_MAX_OUTPUT_TOKENS": str(MAX_OUT)}
CUT_NOTE = "characters were cut here to fit the model's context window"


def big(i: int, chars: int = 5000) -> ChatResponse:
    """A shell call that prints `chars` digits."""
    return tool("shell", {"command": f"printf '%0{chars}d' {i}"}, id=f"t{i}")


class Summariser(FakeProvider):
    """Answers a compaction's summary request itself, every other request from its script."""

    def __init__(self, script: list[Any]) -> None:
        super().__init__(script)
        self.summaries: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        if request.system_text() == SUMMARY_SYSTEM:
            self.summaries.append(request)
            return text("SUMMARY: printed letters with shell.", inp=700, out=40)
        return await super().complete(request, on_text)


async def run(cfg: Any, provider: FakeProvider) -> tuple[Outcome, RecordingSink]:
    sink = RecordingSink(correlation_id=cfg.correlation_id, execution=cfg.execution, secrets=[API_KEY])
    return await Runner(cfg, sink, providers=[provider]).run(), sink


def unmarked(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude={"content": {"__all__": {"cache"}}}) for m in messages]


def assert_pairs_whole(messages: list[Message]) -> None:
    """Roles alternate from a user message; each tool call's result is in the next message."""
    assert [m.role for m in messages] == ["user", "assistant"] * (len(messages) // 2) + ["user"] * (
        len(messages) % 2
    )
    for i, message in enumerate(messages):
        results = {b.tool_use_id for b in message.content if isinstance(b, ToolResultBlock)}
        if results:
            assert results <= {u.id for u in messages[i - 1].tool_uses()}
        if message.tool_uses() and i + 1 < len(messages):
            following = messages[i + 1].content
            assert {u.id for u in message.tool_uses()} <= {
                b.tool_use_id for b in following if isinstance(b, ToolResultBlock)
            }


async def test_a_long_run_is_compacted_and_every_request_fits(tmp_path: Path) -> None:
    provider = Summariser([big(i) for i in range(6)] + [text("done")])
    cfg = make_config(tmp_path, {"tools": ["shell"]}, env=SMALL_WINDOW)
    outcome, sink = await run(cfg, provider)

    assert outcome.stop_reason is StopReason.END_TURN
    events = sink.of("compaction")
    assert any(e["cutToolResults"] for e in events) and any(e["summarisedMessages"] for e in events)
    for event in events:
        assert event["contextWindow"] == WINDOW and event["tokensAfter"] < event["tokensBefore"]
        assert (event["tokensAfter"] + MAX_OUT) * 100 <= WINDOW * 80  # under the threshold again
    for request in provider.requests:
        assert estimate_tokens(request) + MAX_OUT <= WINDOW
        assert_pairs_whole(request.messages)
        newest = [b for b in request.messages[-1].content if isinstance(b, ToolResultBlock)]
        assert all(len(b.content) > 4000 for b in newest)  # the results the model has not read: whole
    # The summary call read the older turns, their long results cut with a note.
    assert CUT_NOTE in provider.summaries[0].messages[0].text()
    # The summarised conversation starts with the task and the summary.
    first = provider.requests[-1].messages[0]
    assert first.content[0] == TextBlock(text="Do the task.")
    assert "were summarised" in first.text() and "SUMMARY: printed letters" in first.text()
    # The summary call is charged (tokens, cost, calls) but is not a turn.
    assert outcome.usage["turns"] == 7 and provider.summaries
    calls = sink.of("usage")[-1]["byModel"]["claude-sonnet-4-6"]["calls"]
    assert calls == 7 + len(provider.summaries)
    assert outcome.usage["inputTokens"] == 7 * 10 + 700 * len(provider.summaries)


async def test_a_compaction_aims_low_so_the_cached_prefix_stays_put_for_turns(tmp_path: Path) -> None:
    provider = Summariser([big(i % 8) for i in range(10)] + [text("done")])
    env = {**SMALL_WINDOW, "AGENTRY_CONTEXT_WINDOW_TOKENS": "8000"}
    _, sink = await run(make_config(tmp_path, {"tools": ["shell"]}, env=env), provider)
    compacted_at = [e["turn"] for e in sink.of("compaction")]
    assert compacted_at and len(compacted_at) <= 3  # not at every turn once the window is near
    assert all((e["tokensAfter"] + MAX_OUT) * 200 <= 8000 * 80 for e in sink.of("compaction"))
    stable = 0
    for turn, (before, after) in enumerate(
        zip(provider.requests, provider.requests[1:], strict=False), start=2
    ):
        if turn in compacted_at:
            continue
        stable += 1
        assert unmarked(after.messages[: len(before.messages)]) == unmarked(before.messages)
        newest = len(before.messages) - 1  # the previous turn's rolling breakpoint: read again
        assert after.messages[newest].content[-1].cache is not None
    assert stable >= 6
    # The older of the two kept turns has its long result cut, with a note.
    kept = provider.requests[compacted_at[0] - 1].messages
    assert [len(kept), kept[1].role] == [5, "assistant"]
    cut = kept[2].content[0]
    assert isinstance(cut, ToolResultBlock) and CUT_NOTE in cut.content and len(cut.content) < 2200


async def test_a_conversation_that_cannot_fit_ends_context_overflow_not_a_400(tmp_path: Path) -> None:
    provider = Summariser([big(0, 200), big(1, 14_000), text("never")])
    cfg = make_config(tmp_path, {"tools": ["shell"]}, env=SMALL_WINDOW)
    outcome, sink = await run(cfg, provider)

    assert outcome.stop_reason is StopReason.CONTEXT_OVERFLOW and outcome.exit_code == 16
    assert f"context window of {WINDOW} tokens" in outcome.summary
    assert len(provider.requests) == 2  # the third request was never sent
    assert provider.summaries and sink.of("compaction")[-1]["summarisedMessages"] == 3
    assert sink.of("usage")[-1]["byModel"]["claude-sonnet-4-6"]["calls"] == 3  # the summary: charged


async def test_a_first_request_larger_than_the_window_is_refused_before_sending(tmp_path: Path) -> None:
    provider = FakeProvider([text("never")])
    env = {"AGENTRY_CONTEXT_WINDOW_TOKENS": "1024"}  # tools and the 8192 output tokens do not fit
    outcome, sink = await run(make_config(tmp_path, env=env), provider)
    assert outcome.stop_reason is StopReason.CONTEXT_OVERFLOW and provider.requests == []
    assert sink.of("compaction") == []  # nothing could be compacted


async def test_compaction_off_sends_the_conversation_as_it_is(tmp_path: Path) -> None:
    provider = FakeProvider([big(i) for i in range(3)] + [text("done")])
    spec = {"tools": ["shell"], "context": {"compaction": "off"}}
    outcome, sink = await run(make_config(tmp_path, spec, env=SMALL_WINDOW), provider)
    assert outcome.stop_reason is StopReason.END_TURN and sink.of("compaction") == []
    results = [b for m in provider.requests[-1].messages for b in m.content if isinstance(b, ToolResultBlock)]
    assert len(results) == 3 and all(len(b.content) >= 5000 for b in results)


def conversation(turns: int, chars: int = 6000) -> list[Message]:
    messages = [Message(role="user", content=[TextBlock(text="task")])]
    for i in range(turns):
        messages.append(Message(role="assistant", content=[ToolUseBlock(id=f"u{i}", name="shell")]))
        result = ToolResultBlock(tool_use_id=f"u{i}", content=f"{i}" * chars)
        messages.append(Message(role="user", content=[result]))
    return messages


def test_long_earlier_results_are_cut_with_a_note_the_newest_is_not() -> None:
    messages = conversation(3)
    cut, count = cut_tool_results(messages)
    assert count == 2 and cut[-1] == messages[-1]
    block = cut[2].content[0]
    assert isinstance(block, ToolResultBlock) and block.tool_use_id == "u0"
    assert block.content.startswith("0" * CUT_HEAD_CHARS) and block.content.endswith("0" * CUT_TAIL_CHARS)
    assert f"[agentry: {6000 - CUT_HEAD_CHARS - CUT_TAIL_CHARS} of this tool result's 6000 {CUT_NOTE}]" in (
        block.content
    )
    assert cut_tool_results(cut)[1] == 0  # a cut result is not cut again


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_the_kept_part_starts_at_a_tool_call_never_between_it_and_its_result(keep: int) -> None:
    messages = conversation(4)
    start = split_point(messages, keep)
    assert start is not None and messages[start].role == "assistant"
    assert sum(m.role == "assistant" for m in messages[start:]) == keep
    assert_pairs_whole([Message(role="user", content=[TextBlock(text="summary")]), *messages[start:]])


def test_nothing_to_summarise_but_the_task() -> None:
    assert split_point(conversation(1), 1) is None and split_point(conversation(2), 3) is None


def test_the_summary_call_itself_fits_the_window() -> None:
    head = conversation(12, chars=3000)  # about 9000 tokens of older turns
    request = summary_request(head, 4000)
    assert request.max_tokens == 1000 and estimate_tokens(request) + request.max_tokens <= 4000
    assert "characters cut here]" in request.messages[0].text()
    assert "[tool call shell {}]" in request.messages[0].text()  # the turns in order, as text


def test_context_windows() -> None:
    assert context_window("claude-sonnet-4-6") == context_window("claude-haiku-4-5-20251001") == 200_000
    assert context_window("gpt-4o-mini") == 128_000 and context_window("gpt-4.1") == 1_047_576
    assert context_window("some-local-model") == 128_000
