"""Configuration of the API, from the environment (pydantic-settings). One documented class.

Every field reads `AGENTRY_<NAME>` except where an alias says otherwise (the Google and Anthropic
variables keep their usual names). `get_settings()` is cached; tests build a `Settings(...)` and
pass it to `create_app(settings)`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTRY_", extra="ignore", populate_by_name=True)

    # -- where things live ---------------------------------------------------------------
    namespace: str = Field(default="default", description="Namespace of the Agent and Execution CRs.")
    google_cloud_project: str = Field(
        default="agentry-dev",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "AGENTRY_GOOGLE_CLOUD_PROJECT"),
        description="Firestore project (the emulator accepts any id).",
    )
    firestore_database: str = Field(default="(default)", description="Firestore database id.")
    kubeconfig: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTRY_KUBECONFIG", "KUBECONFIG"),
        description="Kubeconfig file; unset means in-cluster service account.",
    )
    kube_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one API-server call.")

    # -- auth ----------------------------------------------------------------------------
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key signing session cookies; the same on every replica and worker. Unset: a random "
        "key per process (logged as a warning: sessions end on restart and do not cross workers).",
    )
    session_max_age_seconds: int = Field(default=30 * 86400, ge=60)
    cookie_secure: bool = Field(
        default=True, description="Set the Secure flag (serve over HTTPS); off only for local development."
    )
    guest_sessions: bool = Field(
        default=False, description="Create a guest user on a first visit (off: sign-in required)."
    )
    trusted_hosts: list[str] = Field(
        default_factory=lambda: ["localhost"],
        description="Host names (or `*.domain`) requests may be addressed to; any other name gets 400 "
        "(DNS rebinding). IP literals are always accepted (probes, ClusterIPs). `*` turns the check off.",
    )
    max_body_bytes: int = Field(
        default=2**20, ge=1024, description="Largest request body; larger ones get 413 before parsing."
    )
    oidc_issuer: str | None = Field(default=None, description="Accepted `iss` of OIDC bearer tokens.")
    oidc_audience: str | None = Field(default=None, description="Required `aud` of OIDC bearer tokens.")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL with the issuer's signing keys.")
    scheduler_oidc_audience: str | None = Field(
        default=None,
        description="Required `aud` of the Cloud Scheduler jobs' ID tokens (the operator's audience, by "
        "default its target URL). Unset: the scheduler endpoint is off (404).",
    )
    scheduler_service_accounts: list[str] = Field(
        default_factory=list,
        description="Service account emails whose tokens may start scheduled runs (the jobs' invoker).",
    )
    scheduler_oidc_issuer: str = Field(
        default="https://accounts.google.com", description="Accepted `iss` of the scheduler's ID tokens."
    )
    scheduler_jwks_url: str = Field(
        default="https://www.googleapis.com/oauth2/v3/certs",
        description="JWKS URL with the keys that sign the scheduler's ID tokens.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="A bootstrap API token that authenticates as `import_owner` .",
    )
    import_owner: str = Field(
        default="admin",
        description="User id that owns Agents created with kubectl (imported into Firestore).",
    )

    # -- behaviour ------------------------------------------------------------------------
    sse_max_connections: int = Field(default=1000, ge=1, description="SSE connections per process; then 503.")
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    sse_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often a stream also polls Firestore (events of other replicas)."
    )
    sync_retry_seconds: float = Field(
        default=5.0, gt=0, description="Retry period of Agent CR writes that failed (cluster unavailable)."
    )
    approval_check_seconds: float = Field(default=5.0, gt=0, description="Approval timeout sweep period.")
    allowed_secret_names: list[str] = Field(
        default_factory=list,
        description="Kubernetes Secrets that API-created agents may reference in spec.secrets (none by "
        "default; never a provider-key Secret: with the gateway, runs get a per-run token).",
    )
    allowed_base_urls: list[str] = Field(
        default_factory=list,
        description="Model endpoints (spec.model.baseURL) API-created agents may use; others are refused "
        "because a run's provider key would be sent there.",
    )
    watch: bool = Field(default=True, description="Mirror CR status into Firestore (the watcher task).")

    # -- the chat designer's LLM ---------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "AGENTRY_ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "AGENTRY_ANTHROPIC_BASE_URL")
    )
    chat_model: str = Field(
        default="claude-sonnet-4-6", description="Model of the chat designer and of drafted agents."
    )
    chat_max_tokens: int = Field(default=2048, ge=64, le=32000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@lru_cache
def get_settings() -> Settings:
    return Settings()
