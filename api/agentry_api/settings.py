"""Configuration of the API, from the environment (pydantic-settings). One documented class.

Every field reads `AGENTRY_<NAME>` except where an alias says otherwise (the Google and Anthropic
variables keep their usual names). `get_settings()` is cached; tests build a `Settings(...)` and
pass it to `create_app(settings)`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QUOTAS = (
    "agents",
    "scheduled_agents",
    "concurrent_runs",
    "runs_per_day",
    "chat_conversations",
    "streams",
    "tokens",
    "workflows",
    "concurrent_trials",
)


class Limits(BaseModel):
    """One user's quotas (docs/api.md, "Quotas"). Past one: 429 naming it."""

    agents: int
    scheduled_agents: int
    concurrent_runs: int
    runs_per_day: int
    chat_conversations: int
    streams: int
    tokens: int
    workflows: int
    concurrent_trials: int


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
    request_deadline_seconds: float = Field(
        default=15.0,
        ge=1.0,
        le=300.0,
        description="How long a request may take before its answer starts (a hanging dependency): "
        "past it, 503 with Retry-After. Streams, once started, are not limited.",
    )
    oidc_issuer: str | None = Field(default=None, description="Accepted `iss` of OIDC bearer tokens.")
    oidc_audience: str | None = Field(default=None, description="Required `aud` of OIDC bearer tokens.")
    oidc_jwks_url: str | None = Field(default=None, description="JWKS URL with the issuer's signing keys.")
    oidc_signin_url: str | None = Field(
        default=None,
        description="Where a browser signs in with OIDC (e.g. an oauth2-proxy or identity-aware proxy in "
        "front of the API that sends the user's bearer token on): linked from the sign-in page.",
    )
    oidc_allowed_emails: list[str] = Field(
        default_factory=list,
        description="If set (or oidc_allowed_domains is), only OIDC users with one of these verified "
        "emails are accepted (403 otherwise).",
    )
    oidc_allowed_domains: list[str] = Field(
        default_factory=list,
        description="If set (or oidc_allowed_emails is), only OIDC users with a verified email in one of "
        "these domains are accepted (403 otherwise).",
    )
    token_max_days: int = Field(
        default=365, ge=1, description="Longest lifetime an API token may be created with (expiresAt)."
    )
    guest_mints_per_hour: int = Field(
        default=10, ge=0, description="Guest sessions one client (address) may start per hour; then 429."
    )
    forwarded_hops: int = Field(
        default=0,
        ge=0,
        description="Proxies in front of the API that append to X-Forwarded-For (an Ingress: 1). 0: the "
        "client is the TCP peer. The client address is the entry this many from the right.",
    )
    # Quotas of signed-in users, then of guests: AGENTRY_QUOTA_<NAME>, AGENTRY_GUEST_QUOTA_<NAME>.
    quota_agents: int = Field(default=50, ge=0, description="Agents a user may own.")
    quota_scheduled_agents: int = Field(
        default=10, ge=0, description="Agents with a schedule a user may own."
    )
    quota_concurrent_runs: int = Field(default=5, ge=0, description="Runs not finished yet, at once.")
    quota_runs_per_day: int = Field(default=200, ge=0, description="Runs started per UTC day.")
    quota_chat_conversations: int = Field(default=100, ge=0, description="Chat designer conversations kept.")
    quota_streams: int = Field(default=10, ge=0, description="Event streams open at once (every replica).")
    quota_tokens: int = Field(default=50, ge=0, description="API tokens not revoked a user may hold.")
    quota_workflows: int = Field(default=20, ge=0, description="Workflows a user may own.")
    quota_concurrent_trials: int = Field(
        default=2, ge=0, description="Drafts tried from the chat designer running at once."
    )
    guest_quota_agents: int = Field(default=3, ge=0)
    guest_quota_scheduled_agents: int = Field(default=0, ge=0)
    guest_quota_concurrent_runs: int = Field(default=1, ge=0)
    guest_quota_runs_per_day: int = Field(default=20, ge=0)
    guest_quota_chat_conversations: int = Field(default=5, ge=0)
    guest_quota_streams: int = Field(default=3, ge=0)
    guest_quota_tokens: int = Field(default=5, ge=0)
    guest_quota_workflows: int = Field(default=2, ge=0)
    guest_quota_concurrent_trials: int = Field(default=2, ge=0)
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
        default=15.0,
        gt=0,
        description="How often a stream re-reads Firestore even when nothing woke it (the safety net "
        "when the event listener is off or down).",
    )
    sse_listen: bool = Field(
        default=True,
        description="A Firestore listener on new events wakes this process's streams when another "
        "replica writes (off: events of other replicas arrive by the poll only).",
    )
    peer_wake: bool = Field(
        default=True,
        description="Announce each event to the other API processes in a signed UDP datagram, so their "
        "streams wake at once rather than at the Firestore listener's pace. Needs AGENTRY_SESSION_SECRET "
        "(the key is derived from it); without it, off.",
    )
    peer_address: str = Field(
        default="127.0.0.1",
        description="Address the wake-ups are received on and advertised at (the chart: the pod's IP).",
    )
    peer_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="UDP port of the wake-ups (0: any free one; the bound one is advertised).",
    )
    session_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="How long a replica keeps a session document read from Firestore (0: no cache). "
        "A session ended elsewhere stops working here when the revocation listener sees it (about a "
        "second; it runs when sse_listen is on), and at the latest after this long.",
    )
    credential_check_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="How often an open event stream or chat socket asks again, while idle, whether its "
        "credential still holds (a copy at most this old: about one Firestore read per open credential "
        "per period). An end on this replica, or announced by another, is acted on at once; this bounds "
        "the delay when every notice is lost.",
    )
    sync_retry_seconds: float = Field(
        default=5.0, gt=0, description="Retry period of Agent CR writes that failed (cluster unavailable)."
    )
    approval_check_seconds: float = Field(default=5.0, gt=0, description="Approval timeout sweep period.")
    # -- notifications (docs/events.md, "Events out") --------------------------------------------
    public_url: str | None = Field(
        default=None,
        description="The dashboard's address as people reach it (e.g. https://agentry.example.com): "
        "the links in notifications. Unset: notifications carry paths only.",
    )
    notify_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names and addresses or CIDRs (10.0.0.0/8) notification sinks may reach although "
        "private, loopback or link-local (none by default: such sinks are refused).",
    )
    notify_retry_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 300.0],
        min_length=1,
        max_length=10,
        description="Delays before each retry of a failed delivery; after the last, it is dead-lettered.",
    )
    notify_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="One delivery attempt's limit."
    )
    notify_poll_seconds: float = Field(
        default=2.0, gt=0, le=60, description="How often the dispatcher looks for due deliveries."
    )
    notify_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a replica holds a delivery it is sending; a crashed sender's lease ends then.",
    )
    notify_keep_days: float = Field(
        default=7.0, gt=0, description="Delivered and dead deliveries older than this are deleted."
    )
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
    # Internals answer no stranger (docs/security.md): the OpenAPI document maps every route, and the
    # metrics count users, routes and errors. Neither is on the API's port unless an admin says so.
    openapi: bool = Field(
        default=False, description="Serve /openapi.json, /docs and /redoc on the API's port (off: 404)."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port of their own, which no Service for users or "
        "Ingress routes (0: not served; the chart: api.metrics.port, 9090).",
    )
    metrics_address: str = Field(default="0.0.0.0", description="Address the metrics port listens on.")

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
    # The LLM gateway, with the token keys (the operator's and the gateway's): the designer mints a
    # user token per turn and calls it (metered and budgeted like runs; ANTHROPIC_API_KEY is then not
    # used), and steering, Agent memory and the budgets page reach it with service tokens. Unset: the
    # designer uses ANTHROPIC_API_KEY, unmetered, and those features answer that the gateway is off.
    gateway_url: str | None = Field(
        default=None,
        description="The LLM gateway, e.g. http://agentry-gateway.agentry-system.svc:8090: the chat "
        "designer's calls (a user token per turn), steering messages, Agent memory and the budgets page "
        "(service tokens); needs the token keys.",
    )
    token_keys_dir: str | None = Field(
        default=None, description="Token keyring shared with the gateway: a mounted Secret directory."
    )
    token_keys: SecretStr | None = Field(
        default=None, description="Token keyring as kid:secret[,kid:secret] (development)."
    )
    token_kid: str | None = Field(default=None, description="Minting key id (default: the greatest).")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _oidc_needs_audience(self) -> Settings:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError(
                "AGENTRY_OIDC_ISSUER is set but AGENTRY_OIDC_AUDIENCE is not: without an audience, any "
                "token the issuer signed for any other application would be accepted. Set "
                "AGENTRY_OIDC_AUDIENCE to this API's client id."
            )
        return self

    def limits_of(self, kind: str) -> Limits:
        """The quotas of a user of this kind (guests have their own, lower ones)."""
        prefix = "guest_quota_" if kind == "guest" else "quota_"
        return Limits(**{name: getattr(self, prefix + name) for name in QUOTAS})


@lru_cache
def get_settings() -> Settings:
    return Settings()
