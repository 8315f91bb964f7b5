"""Fixtures for gateway tests: scripted upstream providers and the channel keys in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentry_testing.scripted_llm import ScriptedLLM

from .harness import ANTHROPIC_KEY, OPENAI_KEY


@pytest.fixture(autouse=True)
def channel_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI", OPENAI_KEY)


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def backup() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server
