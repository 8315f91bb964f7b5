"""runtime: claude-code, against a stand-in `claude` (claude_stand_in.py) that replays recorded
stream-json output and, when asked, calls the model through the runtime's relay like the CLI does."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_llm.types import TokenUsage
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from agentry_workspace import app
from agentry_workspace.claude_code import token_usage
from agentry_workspace.cli_relay import PLACEHOLDER_KEY
from agentry_workspace.events import RecordingSink
from agentry_workspace.usage import ModelUsage

from .fakes import API_KEY, make_config

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent / "data"
STAND_IN = Path(__file__).parent / "claude_stand_in.py"
AUTH_TOKEN = "sk-ant-auth-token-0123456789abcdef"
SPEC: dict[str, Any] = {
    "runtime": "claude-code",
    "model": {
        "provider": "anthropic",
        "name": "claude-sonnet-4-6",
        "baseURL": "http://gateway.internal:8080",
        "fallbacks": [{"provider": "anthropic", "name": "claude-haiku-4-5"}],
    },
    "tools": ["shell", "files", "http"],
    "http": {"allowedHosts": ["api.example.com"]},
    "budget": {"maxTurns": 7, "maxCostPerRunUSD": "1.50"},
    # With http access Bash would be RED, so not allowed at all under this runtime: opted out here.
    "approval": {"trustCodeWithAccess": True},
}


def fake_claude(tmp_path: Path, transcript: str, **env: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "claude"
    exe.write_text(f"#!{sys.executable}\n" + STAND_IN.read_text())
    exe.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": "/nonexistent",  # like a read-only root filesystem: the runtime must provide one
        "OPENAI_API_KEY": "sk-should-not-leak-to-the-cli",
        "FAKE_CLAUDE_LOG": str(tmp_path / "claude-call.json"),
        "FAKE_CLAUDE_TRANSCRIPT": str(DATA / transcript),
        **env,
    }


def run(
    tmp_path: Path, transcript: str, spec: dict[str, Any] | None = None, **env: str
) -> tuple[int, RecordingSink, dict[str, Any]]:
    cfg = make_config(
        tmp_path, spec or SPEC, env=fake_claude(tmp_path, transcript, **env), input_text="How many rows?"
    )
    sink = RecordingSink(secrets=[API_KEY])
    code = app.execute(cfg, sink)
    return code, sink, json.loads(cfg.result_file.read_text())


def test_stream_json_maps_to_events_usage_and_result(tmp_path: Path) -> None:
    code, sink, result = run(tmp_path, "claude_success.jsonl")
    assert code == 0
    assert result["stopReason"] == "end_turn"
    assert result["summary"] == "data.csv has 42 lines (41 rows plus a header)."
    # claude-sonnet-4-6, $3 in / $15 out: 10 uncached, 5330 written (x1.25), 5210 read (x0.1).
    priced = (10 * 3 + 5330 * Decimal("3.75") + 5210 * Decimal("0.3") + 116 * 15) / 10**6
    assert priced == Decimal("0.0233205")
    billed = Decimal("0.0241395")  # the CLI's total_cost_usd: its calls besides the turns too
    uncached = Decimal((10 + 5330 + 5210) * 3 + 116 * 15) / 10**6 + (billed - priced)
    assert result["usage"] == {
        "inputTokens": 10 + 5330 + 5210,  # all input: the cache's parts included
        "outputTokens": 116,
        "cacheReadTokens": 5210,
        "cacheWriteTokens": 5330,
        "costUSD": "0.02414",
        "uncachedCostUSD": str(uncached.quantize(Decimal("0.000001"))),
        "model": "claude-sonnet-4-6",
        "turns": 3,
    }
    types = sink.types()
    assert types[0] == "start" and types[-1] == "result"
    calls = sink.of("tool_call")
    assert [(c["toolUseId"], c["tool"]) for c in calls] == [("toolu_01Q", "Bash")]
    assert "wc -l data.csv" in calls[0]["arguments"]
    assert sink.of("tool_result")[0]["summary"] == "42 data.csv"
    turns = sink.of("turn")
    assert [t["turn"] for t in turns] == [1, 1, 2]  # one API message streamed as two blocks
    assert sink.of("usage")[-1]["outputTokens"] == 96 + 20
    # While it runs (what budget.maxCostPerRunUSD is checked against): each message at cache rates,
    # not all input at the input rate (0.03339).
    live = sink.of("usage")[-1]
    assert (live["cacheReadTokens"], live["cacheWriteTokens"]) == (5210, 5210 + 120)
    assert live["costUSD"] == "0.023321" and live["uncachedCostUSD"] == "0.03339"


def test_cache_usage_of_a_messages_api_answer_counts_its_ttls() -> None:
    usage = token_usage(
        {
            "input_tokens": 7,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 2000,
            "output_tokens": 5,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
        }
    )
    assert usage == TokenUsage(
        input_tokens=2307,
        output_tokens=5,
        cache_read_tokens=2000,
        cache_write_tokens=300,
        cache_write_1h_tokens=200,
    )
    # $3 input: 7 at 3, 100 at 3.75, 200 at 6, 2000 at 0.3; 5 out at 15.
    assert ModelUsage.of_call("claude-sonnet-4-6", usage).cost == Decimal("0.002271")


def test_the_cli_is_called_non_interactively_with_mapped_settings(tmp_path: Path) -> None:
    run(tmp_path, "claude_success.jsonl")
    call = json.loads((tmp_path / "claude-call.json").read_text())
    argv = call["argv"]
    assert argv[:5] == ["-p", "--output-format", "stream-json", "--verbose", "--model"]
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--max-budget-usd") + 1] == "1.50"
    assert argv[argv.index("--fallback-model") + 1] == "claude-haiku-4-5"
    allowed = argv[argv.index("--allowedTools") + 1 : argv.index("--disallowedTools")]
    assert "Bash" in allowed and "Read" in allowed and "WebFetch(domain:api.example.com)" in allowed
    assert "WebSearch" in argv[argv.index("--disallowedTools") + 1 :]
    assert "You are a test agent." in argv[argv.index("--append-system-prompt") + 1]
    assert call["stdin"] == "How many rows?"
    assert call["home"] and call["home"].endswith(".agentry/home")
    assert call["cwd"].endswith("/ws")


def test_the_cli_gets_the_relays_address_and_no_key_or_token(tmp_path: Path) -> None:
    proxies = {"NO_PROXY": "gateway.internal", "HTTPS_PROXY": "http://squid:3128"}
    run(tmp_path, "claude_success.jsonl", None, ANTHROPIC_AUTH_TOKEN=AUTH_TOKEN, **proxies)
    call = json.loads((tmp_path / "claude-call.json").read_text())
    env = call["env"]
    assert env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:")
    assert env["ANTHROPIC_API_KEY"] == PLACEHOLDER_KEY
    assert "ANTHROPIC_AUTH_TOKEN" not in env and "OPENAI_API_KEY" not in env
    # Nowhere in its environment or command line: not the key, not the other providers' keys.
    everything = json.dumps(call)
    for secret in (API_KEY, AUTH_TOKEN, "sk-should-not-leak-to-the-cli"):
        assert secret not in everything
    # The egress proxy must not carry its calls to the loopback relay.
    assert env["NO_PROXY"] == "gateway.internal,127.0.0.1,localhost" and "127.0.0.1" in env["no_proxy"]
    # Background calls, subagents and model aliases use the run's model, which the relay lets through.
    chosen = ("ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")
    assert {env[name] for name in chosen} == {"claude-sonnet-4-6"}


def test_the_clis_call_reaches_the_endpoint_with_the_runs_credential(tmp_path: Path) -> None:
    with ScriptedLLM([{"text": "through the relay"}]) as llm:
        spec = {**SPEC, "model": {**SPEC["model"], "baseURL": llm.url}}
        code, _, _ = run(tmp_path, "claude_success.jsonl", spec, FAKE_CLAUDE_CALL="1")
    assert code == 0
    call = json.loads((tmp_path / "claude-call.json").read_text())["call"]
    assert call == {"status": 200, "text": "through the relay"}
    (seen,) = llm.requests
    assert seen.headers["x-api-key"] == API_KEY  # added by the relay: the CLI sent the placeholder
    assert seen.headers["x-agentry-correlation-id"] == "corr-1"
    assert seen.body["model"] == "claude-sonnet-4-6" and seen.path == "/v1/messages"


def test_the_relay_is_gone_when_the_run_ends(tmp_path: Path) -> None:
    run(tmp_path, "claude_success.jsonl")
    relay = json.loads((tmp_path / "claude-call.json").read_text())["env"]["ANTHROPIC_BASE_URL"]
    with pytest.raises(httpx.ConnectError):
        localhttp.post(f"{relay}/v1/messages", json={"model": "claude-sonnet-4-6"}, trust_env=False)


def test_max_turns_result_maps_to_exit_10(tmp_path: Path) -> None:
    code, sink, result = run(tmp_path, "claude_max_turns.jsonl", FAKE_CLAUDE_EXIT="1")
    assert code == 10 and result["stopReason"] == "max_turns"
    assert result["usage"]["turns"] == 1 and result["usage"]["costUSD"] == "0.00075"
    assert sink.of("tool_result")[0]["summary"] == "a.txt"


def test_token_budget_is_enforced_by_stopping_the_cli(tmp_path: Path) -> None:
    spec = {**SPEC, "budget": {"maxTokensPerRun": 5000}}
    code, _, result = run(tmp_path, "claude_success.jsonl", spec, FAKE_CLAUDE_PAUSE="0.2")
    assert code == 11 and result["stopReason"] == "max_tokens"
    assert "maxTokensPerRun" in result["summary"]
    assert "I'll count the CSV rows." in result["summary"]


def test_deadline_kills_a_hanging_cli(tmp_path: Path) -> None:
    code, _, result = run(
        tmp_path,
        "claude_max_turns.jsonl",
        FAKE_CLAUDE_HANG="60",
        AGENTRY_DEADLINE_SECONDS="1",
    )
    assert code == 13 and result["stopReason"] == "deadline"


def test_cli_dying_without_a_result_is_an_internal_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    env = fake_claude(
        tmp_path,
        "claude_success.jsonl",
        FAKE_CLAUDE_EXIT="3",
        FAKE_CLAUDE_STDERR=f"boom: invalid key {API_KEY}",
    )
    env["FAKE_CLAUDE_TRANSCRIPT"] = str(tmp_path / "empty.jsonl")
    cfg = make_config(tmp_path, SPEC, env=env)
    sink = RecordingSink(secrets=[API_KEY])
    assert app.execute(cfg, sink) == 1
    result = json.loads(cfg.result_file.read_text())
    assert "exited with code 3" in result["summary"] and "boom" in result["summary"]
    assert API_KEY not in cfg.result_file.read_text()


def test_missing_cli_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, SPEC, env={"PATH": str(tmp_path)})
    sink = RecordingSink()
    assert app.execute(cfg, sink) == 2
    result = json.loads(cfg.result_file.read_text())
    assert result["stopReason"] == "config_error"
    assert "Claude Code CLI" in result["summary"] and "not installed" in result["summary"]
