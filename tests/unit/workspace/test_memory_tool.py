"""The `memory` tool: offered only when the operator gave the run a store, its actions against the
gateway's real routes (the app in process, memory ledger), the run's redaction step before a value
leaves the pod, its risks (GREEN reads, YELLOW writes), which calls are idempotent on resume, and the
system prompt's note."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_common.memory import ENV_MEMORY_URL, TOOL_NAME
from agentry_common.models import Risk
from agentry_common.tokens import Keyring, mint_run_token
from agentry_gateway.app import create_app
from agentry_gateway.config import GatewayConfig
from agentry_gateway.settings import Settings
from agentry_llm import ToolResultBlock
from agentry_workspace.events import RecordingSink
from agentry_workspace.runner import Runner
from agentry_workspace.tools.base import ToolContext, ToolInputError
from agentry_workspace.tools.memory import MemoryTool

from .fakes import FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit

KEYS = Keyring.single("m" * 32, "k")
SECRET = "team-secret-value-4711"


def gateway_transport() -> httpx.ASGITransport:
    config = GatewayConfig.model_validate({"channels": [{"name": "anthropic", "protocol": "anthropic"}]})
    return httpx.ASGITransport(app=create_app(Settings(ledger="memory"), config=config, keyring=KEYS))


def token(execution: str = "ex-1", memory: str = "agent-uid-1", limit: int = 5) -> str:
    return mint_run_token(
        KEYS,
        namespace="team-a",
        execution=execution,
        execution_uid=f"uid-{execution}",
        agent="tester",
        active_deadline_seconds=600,
        memory=memory,
        memory_limit=limit,
    )


def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path, env={}, timeout=10, max_output=10_000)


def make_tool(transport: httpx.ASGITransport, execution: str = "ex-1", limit: int = 5) -> MemoryTool:
    return MemoryTool("http://gateway", token(execution, limit=limit), lambda s: s, transport=transport)


async def test_the_actions_round_trip_through_the_gateway(tmp_path: Path) -> None:
    transport = gateway_transport()
    first, later = make_tool(transport, "ex-1", limit=2), make_tool(transport, "ex-2", limit=2)
    c = ctx(tmp_path)
    assert (await first.run({"action": "list"}, c)).content == "the memory is empty (0 entries)"
    stored = await first.run({"action": "write", "key": "city", "value": "Seoul"}, c)
    assert (stored.content, stored.is_error) == ("stored city", False)
    await first.run({"action": "write", "key": "style", "value": "bullets"}, c)

    # Another run of the same Agent reads what the first wrote.
    assert (await later.run({"action": "read", "key": "city"}, c)).content == "Seoul"
    found = await later.run({"action": "search", "query": "seo"}, c)
    assert found.content == "1 of 2 entries (at most 2)\ncity: Seoul"
    listed = await later.run({"action": "list"}, c)
    assert listed.content.splitlines()[1:] == ["city: Seoul", "style: bullets"]
    with pytest.raises(ToolInputError, match=r"HTTP 409\): the memory holds 2 entries"):
        await later.run({"action": "write", "key": "third", "value": "x"}, c)
    assert (await later.run({"action": "delete", "key": "city"}, c)).content == "deleted city"
    missing = await later.run({"action": "read", "key": "city"}, c)
    assert missing.is_error and "no memory entry 'city'" in missing.content


async def test_bad_arguments_are_errors_the_model_can_read(tmp_path: Path) -> None:
    memory, c = make_tool(gateway_transport()), ctx(tmp_path)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "read"}, "key: read needs a key"),
        ({"action": "write", "key": "Bad Key", "value": "v"}, "is not a memory key"),
        ({"action": "write", "key": "k"}, "value: write needs a value"),
        ({"action": "search"}, "query: search needs words"),
        ({"action": "forget"}, "action"),
        ({"action": "write", "key": "k", "value": "x" * 5000}, r"HTTP 413\): value: 5000 bytes"),
    ]
    for args, message in cases:
        with pytest.raises(ToolInputError, match=message):
            await memory.run(args, c)


def test_risk_and_idempotency_follow_the_action(tmp_path: Path) -> None:
    memory, c = make_tool(gateway_transport()), ctx(tmp_path)
    for action in ("read", "search", "list"):
        assert memory.assess({"action": action}, c).risk is Risk.GREEN and memory.idempotent(
            {"action": action}
        )
    for action in ("write", "delete"):
        assert memory.assess({"action": action}, c).risk is Risk.YELLOW
        assert not memory.idempotent({"action": action})


async def test_a_run_with_memory_redacts_what_it_writes(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, env={ENV_MEMORY_URL: "http://gateway", "ANTHROPIC_API_KEY": token()})
    sink = RecordingSink()
    sink.bind(correlation_id="corr-1", execution="ex-1", secrets=[SECRET])
    provider = FakeProvider(
        [
            tool(TOOL_NAME, {"action": "write", "key": "login", "value": f"token is {SECRET}"}, id="m1"),
            text("Done."),
        ]
    )
    runner = Runner(cfg, sink, providers=[provider])
    transport = gateway_transport()
    memory = runner.tools[TOOL_NAME]
    assert isinstance(memory, MemoryTool)
    memory.transport = transport
    outcome = await runner.run()
    assert outcome.summary == "Done."
    first = provider.requests[0]
    assert TOOL_NAME in {t.name for t in first.tools}
    assert "The memory tool keeps notes across your runs" in first.system_text()
    result = [m for m in provider.requests[1].messages if m.role == "user"][-1].content[0]
    assert isinstance(result, ToolResultBlock) and result.content == "stored login (secrets redacted)"
    stored = await make_tool(transport).run({"action": "read", "key": "login"}, ctx(tmp_path))
    assert SECRET not in stored.content and stored.content.startswith("token is ")


async def test_without_a_store_there_is_no_memory_tool(tmp_path: Path) -> None:
    provider = FakeProvider([text("Done.")])
    runner = Runner(make_config(tmp_path), RecordingSink(), providers=[provider])
    await runner.run()
    assert TOOL_NAME not in {t.name for t in provider.requests[0].tools}
    assert "memory tool" not in provider.requests[0].system_text()
