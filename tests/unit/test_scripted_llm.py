"""The scripted provider serves concurrent runs their own answers when items carry "match"."""

from __future__ import annotations

import pytest

from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.unit


def ask(llm: ScriptedLLM, text: str) -> str:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}
    answer = localhttp.post(f"{llm.url}/v1/messages", json=body, timeout=10).json()
    return str(answer["content"][0]["text"])


def test_an_item_with_match_goes_to_the_request_that_contains_its_text() -> None:
    with ScriptedLLM() as llm:
        llm.script(
            [
                {"match": "source B", "text": "B says hi"},
                {"match": "source A", "text": "A says hi"},
                {"text": "anyone"},
            ]
        )
        assert ask(llm, "read source A") == "A says hi"  # not the first item: it is B's
        assert ask(llm, "something else") == "anyone"  # the first item without a match
        assert ask(llm, "read source B") == "B says hi"
        assert llm.pending == 0


def test_a_kept_item_answers_every_request_whose_last_message_matches() -> None:
    with ScriptedLLM() as llm:
        body = {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "receipt-1"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "receipt-2"},
            ],
        }
        llm.script(
            [
                {"match_last": "receipt-1", "text": "after one", "keep": True},
                {"match_last": "receipt-2", "text": "after two", "keep": True},
            ]
        )
        for _ in range(2):  # asked again (a lost pod's call repeated): the same answer
            answer = localhttp.post(f"{llm.url}/v1/messages", json=body, timeout=10).json()
            assert answer["content"][0]["text"] == "after two"  # receipt-1 is in the messages, not last
        assert ask(llm, "receipt-1") == "after one"
        assert llm.pending == 2
