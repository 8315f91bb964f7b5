"""The CLI's environment (pydantic-settings). One documented class.

Every field reads `AGENTRY_<NAME>` except where an alias says otherwise (the variables other tools
share keep their usual names). Flags override a field; the config file (config.py) fills in what
the flags and the environment leave unset. `get_settings()` reads the environment at each call, not
once: one process (a test, a shell's completion) runs many commands under different environments.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GATEWAY = "http://127.0.0.1:8090"
DEFAULT_OPERATOR = "http://127.0.0.1:8080/healthz"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENTRY_", extra="ignore", populate_by_name=True, frozen=True
    )

    # -- the API commands (--api-url, --token, --config) -----------------------------------
    api_url: str | None = Field(default=None, description="The Agentry API; `doctor` checks its /readyz.")
    token: str | None = Field(default=None, description="The API token.")
    config: str | None = Field(default=None, description="The config file (default below xdg_config_home).")
    xdg_config_home: str | None = Field(
        default=None,
        validation_alias=AliasChoices("XDG_CONFIG_HOME"),
        description="Base of the default config file, `<it>/agentry/config.yaml` (unset: ~/.config).",
    )

    # -- `agentry doctor` -----------------------------------------------------------------
    gateway_url: str = Field(default=DEFAULT_GATEWAY, description="The LLM gateway (--gateway).")
    operator_health_url: str = Field(default=DEFAULT_OPERATOR, description="The operator's /healthz.")
    google_cloud_project: str = Field(
        default="agentry-dev",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT"),
        description="Firestore project (--project).",
    )
    firestore_emulator_host: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FIRESTORE_EMULATOR_HOST"),
        description="The Firestore emulator the client library talks to instead of Google's (shown only).",
    )
    kubeconfig: str | None = Field(
        default=None, validation_alias=AliasChoices("KUBECONFIG"), description="Kubeconfig (--kubeconfig)."
    )
    # The keys `doctor` mints a service token with when --token is not given (as the gateway reads them).
    token_keys_dir: str | None = None
    token_keys: str | None = None
    token_kid: str | None = None


def get_settings() -> Settings:
    return Settings()


__all__ = ["DEFAULT_GATEWAY", "DEFAULT_OPERATOR", "Settings", "get_settings"]
