"""Routing table, cheaper models, complexity routing, the governance file, doctor's rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentry_cli.doctor import Check, channel_hint, render
from agentry_common.models import Provider as Protocol
from agentry_gateway.config import GatewayConfig, config_from_env, load_config
from agentry_gateway.routing import Router, complexity
from agentry_llm import ChatRequest, Message, TextBlock, ToolSpec

pytestmark = pytest.mark.unit

CONFIG = {
    "channels": [
        {"name": "anthropic", "protocol": "anthropic", "apiKeyEnv": "A"},
        {"name": "openai", "protocol": "openai", "apiKeyEnv": "O"},
        {"name": "local", "protocol": "openai", "baseURL": "http://lmstudio:1234/v1"},
    ],
    "routes": [
        {
            "model": "claude-sonnet-*",
            "chain": [{"channel": "anthropic"}, {"channel": "openai", "model": "gpt-4.1"}],
        },
        {"model": "local-*", "chain": [{"channel": "local", "model": "qwen"}], "cheaper": "local-tiny"},
    ],
    "defaults": {"openai": "openai"},
    "budgets": [{"name": "u", "scope": "user", "limits": [{"window": "30h", "tokens": 10}]}],
    "timeZone": "Asia/Seoul",
}


def request(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(system="s", messages=[Message(role="user", content=[TextBlock(text=text)])], **kw)


def test_chains_follow_routes_then_protocol_defaults() -> None:
    router = Router(GatewayConfig.model_validate(CONFIG))
    assert [h.label for h in router.chain("claude-sonnet-4-6", Protocol.ANTHROPIC)] == [
        "anthropic:claude-sonnet-4-6",
        "openai:gpt-4.1",
    ]
    assert [h.label for h in router.chain("local-x", Protocol.ANTHROPIC)] == ["local:qwen"]
    assert [h.label for h in router.chain("gpt-5", Protocol.OPENAI)] == ["openai:gpt-5"]
    assert [h.label for h in router.chain("claude-haiku-4-5", Protocol.ANTHROPIC)] == [
        "anthropic:claude-haiku-4-5"
    ]


def test_cheaper_models() -> None:
    router = Router(GatewayConfig.model_validate(CONFIG))
    assert router.cheaper("local-big") == "local-tiny"
    assert router.cheaper("claude-opus-4-6") == "claude-sonnet-4-6"
    assert router.cheaper("claude-sonnet-4-6") == "claude-haiku-4-5"
    assert router.cheaper("gpt-4.1") == "gpt-4.1-mini" and router.cheaper("gpt-4.1-mini") == "gpt-4.1-nano"
    assert router.cheaper("claude-haiku-4-5") is None and router.cheaper("gpt-4.1-nano") is None


def test_config_validation(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(CONFIG)
    assert config.keep_seconds == 30 * 3600 and config.calendar.tz == "Asia/Seoul"
    assert not config.channel("local").needs_key  # type: ignore[union-attr]
    bad_route = {**CONFIG, "routes": [{"model": "*", "chain": [{"channel": "nope"}]}]}
    with pytest.raises(ValueError, match="unknown channel 'nope'"):
        GatewayConfig.model_validate(bad_route)
    with pytest.raises(ValueError, match="unknown timeZone"):
        GatewayConfig.model_validate({**CONFIG, "timeZone": "Mars/Olympus"})
    path = tmp_path / "gateway.yaml"
    path.write_text("channels:\n  - {name: a, protocol: anthropic, apiKeyFile: /nonexistent}\n")
    loaded = load_config(str(path))
    assert loaded.channels[0].api_key() == "" and loaded.default_channel(Protocol.ANTHROPIC) is not None
    env = config_from_env({"ANTHROPIC_API_KEY": "x", "OPENAI_BASE_URL": "http://local/v1"})
    assert [(c.name, c.base_url) for c in env.channels] == [
        ("anthropic", None),
        ("openai", "http://local/v1"),
    ]


def test_complexity_scores_and_explains() -> None:
    easy, why_easy = complexity(request("Summarize this short note."))
    hard, why_hard = complexity(
        request(
            "Design the architecture and analyze the trade-offs of the migration. " + "y" * 25_000,
            max_tokens=16000,
            tools=[ToolSpec(name=f"t{i}", description="", input_schema={}) for i in range(5)],
        )
    )
    assert easy < 2 < 8 <= hard
    assert "simple task words: short, summarize" in why_easy
    assert "characters of context" in why_hard and "5 tools" in why_hard and "asks to" in why_hard


def test_auto_routing_weighs_budget_and_past_failures() -> None:
    router = Router(GatewayConfig.model_validate(CONFIG))
    plain = request("Explain how this function works in detail, step by step.")
    roomy = router.auto(plain, agent="ns/a", priority=5, budget_pct=0)
    tight = router.auto(plain, agent="ns/a", priority=5, budget_pct=95)
    assert roomy.score > tight.score and tight.tier == "light"
    for _ in range(10):
        router.stats.record("ns/a", "light", ok=False)
    after_failures = router.auto(plain, agent="ns/a", priority=5, budget_pct=95)
    assert after_failures.score > tight.score
    assert set(roomy.to_wire()["factors"]) == {
        "complexity",
        "budgetAvailability",
        "pastFailuresOfLight",
        "priority",
    }
    assert "score" in roomy.reason and "budget left 100 %" in roomy.reason


def test_doctor_rendering_and_hints() -> None:
    checks = [
        Check("gateway", True, 3.2, "up"),
        Check("channel x", False, 40.0, "HTTP 401", channel_hint("x", "HTTP 401: invalid x-api-key")),
    ]
    text = render(checks, color=False)
    assert "✔ gateway" in text and "✘ channel x" in text and "fix: the provider refused" in text
    assert text.splitlines()[-1] == "1 of 2 red"
    assert "\033[31m" in render(checks, color=True)
    assert "circuit breaker" in channel_hint("x", "circuit breaker for x is open")
    assert "baseURL" in channel_hint("x", "ConnectError: connection refused")
    assert "probeModel" in channel_hint("x", "HTTP 404: model not found")
    assert "mount the key" in channel_hint("x", "channel 'x' has no API key")
