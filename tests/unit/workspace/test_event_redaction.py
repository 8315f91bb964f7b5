"""Every event kind is redacted as a structure, string by string, before its line is written: per
kind (the README's event table, each documented field planted with the secret) and at the real
emission sites of the loop (model text, tool calls and results, retries, approvals).

The secret used here holds characters JSON escapes (a quote, a backslash): redacting the serialized
line, as the runtime did before, never found it there."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agentry_common.statesig import ENV_STATE_KEY, SIGNATURE_FIELD, state_verifies
from agentry_llm import ProviderError
from agentry_workspace import events
from agentry_workspace.events import TEXT_IN_EVENTS, RecordingSink
from agentry_workspace.outcome import StopReason
from agentry_workspace.runner import Runner
from agentry_workspace.state import Decision, ResumeRequest, RunState

from .fakes import FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[3] / "workspace_image" / "README.md"
SECRET = 'pa"ss\\word-7f3a9c1e'  # what a Secret may hold; JSON writes it as pa\"ss\\\\word-...
B64 = base64.b64encode(SECRET.encode()).decode()
REF = {"name": "team-token", "key": "token"}
SECRET_SPEC = {"secrets": [{"env": "TEAM_TOKEN", "secretKeyRef": REF}]}


def documented_events() -> dict[str, list[str]]:
    """{event type: its fields} from the README's table of events."""
    table = README.read_text().split("## Output 1: events on stdout", 1)[1].split("## Output 2", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", table, re.MULTILINE)
    return {kind: re.findall(r"`(\w+)`", fields) for kind, fields in rows}


def assert_clean(sink: RecordingSink) -> None:
    lines = "\n".join(sink.lines)
    assert "[REDACTED]" in lines
    for form in (SECRET, json.dumps(SECRET)[1:-1], B64):
        assert form not in lines, form


def test_the_runtime_knows_every_documented_event_type() -> None:
    assert set(documented_events()) == events.EVENT_TYPES


@pytest.mark.parametrize("kind", sorted(documented_events()))
def test_every_field_of_every_event_kind_is_redacted(kind: str) -> None:
    sink = RecordingSink(secrets=[SECRET])
    shapes: list[Any] = [
        f"a {SECRET} b",
        {"nested": [f"x{SECRET}", {SECRET: B64}]},
        [SECRET, 1, None],
        Path(f"/ws/{SECRET}"),  # not JSON: written as its str(), redacted as such
    ]
    fields = {name: shapes[i % len(shapes)] for i, name in enumerate(documented_events()[kind])}
    sink.emit(kind, **fields)
    assert_clean(sink)
    (event,) = sink.events
    assert set(fields) <= set(event)


async def test_the_loops_events_are_redacted_where_they_are_emitted(tmp_path: Path) -> None:
    """turn (model text), tool_call (arguments), tool_result (output, also base64 of it), usage."""
    spec = {**SECRET_SPEC, "approval": {"trustCodeWithAccess": True}}  # shell runs without a pause
    cfg = make_config(tmp_path, spec, env={"TEAM_TOKEN": SECRET})
    script = [
        tool("shell", {"command": f"echo '{SECRET}' >/dev/null; printf %s \"$TEAM_TOKEN\""}, say=SECRET),
        tool("shell", {"command": 'printf %s "$TEAM_TOKEN" | base64'}, id="b64"),
        text(f"It was {SECRET}."),
    ]
    sink = RecordingSink(secrets=[SECRET])
    outcome = await Runner(cfg, sink, providers=[FakeProvider(script)]).run()
    assert outcome.stop_reason is StopReason.END_TURN
    assert {"turn", "tool_call", "tool_result", "usage"} <= set(sink.types())
    assert_clean(sink)
    summaries = [e["summary"] for e in sink.of("tool_result")]
    assert summaries[0] == "exit code 0 [REDACTED]"
    assert summaries[1].startswith("exit code 0 [REDACTED]")  # base64: at most its padding is left


async def test_a_secret_cut_by_an_events_limit_leaves_no_piece(tmp_path: Path) -> None:
    """The turn's text (TEXT_IN_EVENTS) and a one-line summary (300) are cut before they are emitted."""
    spec = {**SECRET_SPEC, "approval": {"trustCodeWithAccess": True}}
    cfg = make_config(tmp_path, spec, env={"TEAM_TOKEN": SECRET})
    long_text = "x" * (TEXT_IN_EVENTS - 10) + SECRET
    printed = "printf '%0277d' 0; printf %s \"$TEAM_TOKEN\""  # 12 + 277 + 10 of the secret: 299
    script = [tool("shell", {"command": printed}, say=long_text, id="c1"), text("Done.")]
    sink = RecordingSink(secrets=[SECRET])
    await Runner(cfg, sink, providers=[FakeProvider(script)]).run()
    turn, result = sink.of("turn")[0], sink.of("tool_result")[0]
    assert turn["text"].endswith("x[REDACTED]") and result["summary"].endswith("0[REDACTED]…")
    assert SECRET[:8] not in "\n".join(sink.lines)


async def test_retry_and_fallback_errors_are_redacted(tmp_path: Path) -> None:
    error = ProviderError(f"401 key {SECRET} refused", provider="anthropic/x", status=503, retryable=True)
    cfg = make_config(tmp_path, SECRET_SPEC, env={"TEAM_TOKEN": SECRET})
    sink = RecordingSink(secrets=[SECRET])
    await Runner(cfg, sink, providers=[FakeProvider([error, text("ok")])]).run()
    assert sink.of("retry")
    assert_clean(sink)


async def test_an_approval_request_and_decision_are_redacted_and_the_state_verifies(tmp_path: Path) -> None:
    key = "state-key-0123456789abcdef"
    env = {"TEAM_TOKEN": SECRET, ENV_STATE_KEY: key}
    spec = {**SECRET_SPEC, "http": {"allowedHosts": ["example.com"]}}
    cfg = make_config(tmp_path, spec, env=env)
    call = tool("http", {"method": "POST", "url": f"https://example.com/?t={SECRET}", "body": B64}, id="p1")
    sink = RecordingSink(secrets=[SECRET])
    outcome = await Runner(cfg, sink, providers=[FakeProvider([call])]).run()
    assert outcome.stop_reason is StopReason.APPROVAL_REQUIRED
    (event,) = sink.of("approval_request")
    assert_clean(sink)
    assert state_verifies(key, event["state"], event[SIGNATURE_FIELD])

    state = RunState.model_validate(event["state"])
    decision = Decision(approval_id=state.pending.approval_id, approved=False, reason=f"no: {SECRET}")
    resumed = make_config(tmp_path, spec, env=env, resume=ResumeRequest(state=state, decision=decision))
    again = RecordingSink(secrets=[SECRET])
    await Runner(resumed, again, providers=[FakeProvider([text("Fine.")])]).run()
    (decided,) = again.of("approval_decision")
    assert decided["reason"] == "no: [REDACTED]"
    assert_clean(again)


@pytest.mark.parametrize(
    "at", [1_767_323_045.678_9, 1_767_323_045.999_9, 1_767_323_046.0, 1_767_323_046.000_4]
)
def test_events_are_stamped_as_datetime_would_stamp_them(monkeypatch: pytest.MonkeyPatch, at: float) -> None:
    """now_rfc3339 formats the second once and adds the milliseconds: the same text as datetime's
    isoformat (truncated to the millisecond), across a second's boundary too."""
    import datetime as dt
    import time

    from agentry_workspace import events

    monkeypatch.setattr(time, "time", lambda: at)
    expected = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")
    assert events.now_rfc3339() == expected.replace("+00:00", "Z")
