"""The runtime's tunables (agentry_workspace.settings): read from the run's environment mapping."""

from __future__ import annotations

import pytest

from agentry_workspace.settings import Settings, variable

pytestmark = pytest.mark.unit


def test_values_come_from_the_given_environment_and_blank_is_unset() -> None:
    s = Settings.from_env({"AGENTRY_RETRY_ATTEMPTS": " 5 ", "AGENTRY_TOOL_TIMEOUT_SECONDS": "2.5"})
    assert (s.retry_attempts, s.tool_timeout_seconds) == (5, 2.5)
    blank = Settings.from_env({"AGENTRY_MAX_OUTPUT_TOKENS": "  "})
    assert blank.max_output_tokens == 8192 and blank.retry_attempts == 3


def test_the_process_environment_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRY_RETRY_ATTEMPTS", "9")
    assert Settings.from_env({}).retry_attempts == 3
    assert Settings().retry_attempts == 9  # the class itself reads the process environment


@pytest.mark.parametrize(
    ("name", "raw"), [("retry_attempts", "0"), ("max_output_tokens", "lots"), ("llm_timeout_seconds", "0.5")]
)
def test_a_bad_value_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=rf"^{variable(name)}: .*, got '{raw}'$"):
        Settings.from_env({variable(name): raw})
