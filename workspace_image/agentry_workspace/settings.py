"""The runtime's tunables, from the environment (pydantic-settings). One documented class.

Every field reads `AGENTRY_<NAME>` (workspace_image/README.md lists them with their defaults). A run
reads them from the environment its entry point was given (`Settings.from_env`): the pod's, or the
one a test or `agentry run` passes. An empty variable is unset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "AGENTRY_"


def variable(field: str) -> str:
    """The environment variable of a field: `retry_attempts` -> AGENTRY_RETRY_ATTEMPTS."""
    return ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    """Tunables with safe defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )

    retry_attempts: int = Field(default=3, ge=1, description="Tries per provider per call, first included.")
    retry_initial_seconds: float = Field(default=1.0, ge=0, description="First back-off, doubling.")
    retry_max_seconds: float = Field(default=30.0, ge=0, description="Longest back-off (caps retry-after).")
    breaker_fail_max: int = Field(default=5, ge=1, description="Failures in a row that open a breaker.")
    breaker_reset_seconds: float = Field(default=60.0, ge=0, description="Open breaker's wait.")
    llm_timeout_seconds: float = Field(default=600.0, ge=1, description="One model call.")
    max_output_tokens: int = Field(default=8192, ge=16, description="max_tokens of a model call.")
    tool_timeout_seconds: float = Field(default=120.0, ge=1, description="One tool call's default timeout.")
    tool_output_bytes: int = Field(default=16384, ge=256, description="Tool output shown to the model.")
    context_window_tokens: int | None = Field(
        default=None, ge=1024, description="The model's context window, where the runtime's table is wrong."
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """The settings `env` gives. Every field is passed explicitly (a missing or blank variable as its
        default), so the process environment adds nothing. ValueError names the variable at fault."""
        given: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            raw = env.get(variable(name), "").strip()
            given[name] = raw or info.default
        try:
            return cls(**given)
        except ValidationError as err:
            first = err.errors()[0]
            name = str(first["loc"][0])
            raise ValueError(f"{variable(name)}: {first['msg']}, got {given[name]!r}") from None


__all__ = ["Settings", "variable"]
